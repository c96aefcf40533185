//! Offline face detection and face crops.
//!
//! **Detector.** A Viola-Jones (Haar cascade) detector written here in Rust, reading
//! OpenCV's cascade XML format (stump-based boosted cascades, `BOOST`/`HAAR`). The crate
//! carries OpenCV's `haarcascade_frontalface_default.xml` (Intel License, kept with its
//! header in `assets/`), so detection needs no download and no system file:
//! [`Cascade::frontal_face`]. Its multi-scale scan follows OpenCV's
//! `CascadeClassifier::detectMultiScale` (scale pyramid of bilinear resizes, step 2 px up
//! to scale 2 then 1 px, variance normalisation over the inner window, the low-variance
//! window rejection, the "skip a step after a first-stage reject" rule, and
//! `groupRectangles`), so its boxes agree with OpenCV's (`bench/media` compares them).
//!
//! (Why not a crate: `rustface` 0.1.7 does ship its SeetaFace model inside the published
//! crate, but offers no way to reach it from a dependent crate other than a file path into
//! Cargo's registry.)
//!
//! **Tracking.** Detection runs on a downscaled grey copy of every `k`-th sampled frame
//! (and the last one); boxes in between are linearly interpolated, and held before the
//! first and after the last detection. At each detection the face closest to the current
//! track (highest IoU) is kept, the largest face starts a track. A clip where no face is
//! found anywhere falls back to centre crops, counted in [`FaceStats`].
//!
//! **Crops.** A square of side `margin * max(box w, box h)` (margin 1.3 by default)
//! centred on the box, shifted to lie inside the frame, and shrunk to the frame's shorter
//! side if larger, resized (antialiased) to `crop_size x crop_size`.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::MediaError;
use crate::image_ops::{RectF, resize_region, rgb_to_gray};

/// OpenCV's `haarcascade_frontalface_default.xml` (Intel License Agreement, see its
/// header), as shipped in OpenCV 4.6 (Debian's `opencv-data`).
pub const FRONTAL_FACE_XML: &str = include_str!("../assets/haarcascade_frontalface_default.xml");

#[derive(Clone, Debug)]
struct HaarFeature {
    /// Up to three `(x, y, w, h, weight)` rectangles in window coordinates.
    rects: Vec<(u32, u32, u32, u32, f32)>,
}

#[derive(Clone, Copy, Debug)]
struct Stump {
    feature: usize,
    threshold: f32,
    left: f32,
    right: f32,
}

#[derive(Clone, Copy, Debug)]
struct Stage {
    threshold: f32,
    first: usize,
    count: usize,
}

/// A boosted cascade of Haar stumps (OpenCV's XML format).
#[derive(Clone, Debug)]
pub struct Cascade {
    win_w: usize,
    win_h: usize,
    stages: Vec<Stage>,
    stumps: Vec<Stump>,
    features: Vec<HaarFeature>,
}

/// Text between the next `<tag>` and its `</tag>` at or after `from`, and the position
/// after the closing tag.
fn tag_text<'a>(s: &'a str, tag: &str, from: usize) -> Option<(&'a str, usize)> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let a = s[from..].find(&open)? + from + open.len();
    let b = s[a..].find(&close)? + a;
    Some((&s[a..b], b + close.len()))
}

fn nums<T: std::str::FromStr>(text: &str, what: &str) -> Result<Vec<T>, MediaError> {
    text.split_whitespace()
        .map(|t| {
            t.parse::<T>().map_err(|_| {
                MediaError::Invalid(format!("cascade XML: bad number {t:?} in {what}"))
            })
        })
        .collect()
}

impl Cascade {
    /// Parses an OpenCV cascade XML (new format, stump-based Haar cascades such as the
    /// `haarcascade_frontalface_*.xml` files). Errors name what is malformed.
    pub fn from_xml(xml: &str) -> Result<Self, MediaError> {
        let bad = |m: &str| MediaError::Invalid(format!("cascade XML: {m}"));
        // Drop comments (the licence header), which may contain tags.
        let mut text = String::with_capacity(xml.len());
        let mut rest = xml;
        while let Some(a) = rest.find("<!--") {
            text.push_str(&rest[..a]);
            let b = rest[a..]
                .find("-->")
                .ok_or_else(|| bad("unterminated comment"))?;
            rest = &rest[a + b + 3..];
        }
        text.push_str(rest);
        let s = text.as_str();
        let (kind, _) = tag_text(s, "featureType", 0).ok_or_else(|| bad("no <featureType>"))?;
        if kind.trim() != "HAAR" {
            return Err(bad(&format!("feature type {:?} is not HAAR", kind.trim())));
        }
        let get_usize = |tag: &str| -> Result<usize, MediaError> {
            let (t, _) = tag_text(s, tag, 0).ok_or_else(|| bad(&format!("no <{tag}>")))?;
            t.trim()
                .parse()
                .map_err(|_| bad(&format!("<{tag}> is not a number")))
        };
        let (win_h, win_w) = (get_usize("height")?, get_usize("width")?);
        let (stages_text, _) = tag_text(s, "stages", 0).ok_or_else(|| bad("no <stages>"))?;
        let mut stages = Vec::new();
        let mut stumps = Vec::new();
        let mut pos = 0;
        while let Some((n, p)) = tag_text(stages_text, "maxWeakCount", pos) {
            let n: usize = n
                .trim()
                .parse()
                .map_err(|_| bad("<maxWeakCount> is not a number"))?;
            let (th, p) = tag_text(stages_text, "stageThreshold", p)
                .ok_or_else(|| bad("stage without <stageThreshold>"))?;
            let threshold: f32 = th.trim().parse().map_err(|_| bad("bad stageThreshold"))?;
            let first = stumps.len();
            let mut q = p;
            for _ in 0..n {
                let (nodes, q1) = tag_text(stages_text, "internalNodes", q)
                    .ok_or_else(|| bad("weak classifier without <internalNodes>"))?;
                let (leaves, q2) = tag_text(stages_text, "leafValues", q1)
                    .ok_or_else(|| bad("weak classifier without <leafValues>"))?;
                let nodes: Vec<f64> = nums(nodes, "internalNodes")?;
                let leaves: Vec<f32> = nums(leaves, "leafValues")?;
                if nodes.len() != 4 || leaves.len() != 2 {
                    return Err(bad("only stump (depth-1) weak classifiers are supported \
                         (4 internalNodes values, 2 leafValues)"));
                }
                stumps.push(Stump {
                    feature: nodes[2] as usize,
                    threshold: nodes[3] as f32,
                    left: leaves[0],
                    right: leaves[1],
                });
                q = q2;
            }
            stages.push(Stage {
                threshold,
                first,
                count: n,
            });
            pos = q;
        }
        if stages.is_empty() {
            return Err(bad("no stages"));
        }
        let (feat_text, _) = tag_text(s, "features", 0).ok_or_else(|| bad("no <features>"))?;
        let mut features = Vec::new();
        let mut pos = 0;
        while let Some((rects, p)) = tag_text(feat_text, "rects", pos) {
            let mut v = Vec::new();
            let mut r = 0;
            while let Some((rect, r2)) = tag_text(rects, "_", r) {
                let n: Vec<f32> = nums(rect, "rects")?;
                if n.len() != 5 || n[..4].iter().any(|&x| x < 0.0) {
                    return Err(bad("a rect needs `x y w h weight`"));
                }
                let (x, y, w, h) = (n[0] as u32, n[1] as u32, n[2] as u32, n[3] as u32);
                if (x + w) as usize > win_w || (y + h) as usize > win_h {
                    return Err(bad("a rect lies outside the detection window"));
                }
                v.push((x, y, w, h, n[4]));
                r = r2;
            }
            if v.is_empty() || v.len() > 3 {
                return Err(bad("a feature needs 1 to 3 rects"));
            }
            features.push(HaarFeature { rects: v });
            pos = p;
        }
        if feat_text.contains("<tilted>1") {
            return Err(bad("tilted Haar features are not supported"));
        }
        if let Some(st) = stumps.iter().find(|st| st.feature >= features.len()) {
            return Err(bad(&format!(
                "stump uses feature {} of {}",
                st.feature,
                features.len()
            )));
        }
        Ok(Self {
            win_w,
            win_h,
            stages,
            stumps,
            features,
        })
    }

    /// The bundled OpenCV frontal-face cascade, parsed once.
    pub fn frontal_face() -> &'static Cascade {
        static C: OnceLock<Cascade> = OnceLock::new();
        C.get_or_init(|| {
            // The bundled file is parsed by the unit tests, so this cannot fail.
            Cascade::from_xml(FRONTAL_FACE_XML).expect("bundled cascade parses")
        })
    }

    /// Detection window `(width, height)` in pixels.
    pub fn window(&self) -> (usize, usize) {
        (self.win_w, self.win_h)
    }

    /// Stages in the cascade.
    pub fn num_stages(&self) -> usize {
        self.stages.len()
    }

    /// Detects objects in the grey `w x h` image `gray` (`[h, w]` row-major), like
    /// OpenCV's `detectMultiScale(gray, scaleFactor, minNeighbors, 0, minSize, maxSize)`.
    /// Returns boxes in pixels of `gray`, with their neighbour counts.
    pub fn detect(
        &self,
        gray: &[u8],
        w: usize,
        h: usize,
        params: &DetectParams,
    ) -> Result<Vec<Detection>, MediaError> {
        if gray.len() != w * h || w == 0 || h == 0 {
            return Err(MediaError::Invalid(format!(
                "detect: buffer of {} bytes is not {w} x {h}",
                gray.len()
            )));
        }
        if params.scale_factor.is_nan() || params.scale_factor <= 1.0 {
            return Err(MediaError::Invalid(format!(
                "detect: scale_factor must be > 1, got {}",
                params.scale_factor
            )));
        }
        let mut raw: Vec<[i32; 4]> = Vec::new();
        let mut factor = 1.0f64;
        loop {
            let win_w = (self.win_w as f64 * factor).round() as usize;
            let win_h = (self.win_h as f64 * factor).round() as usize;
            let sw = (w as f64 / factor).round() as usize;
            let sh = (h as f64 / factor).round() as usize;
            if sw <= self.win_w || sh <= self.win_h {
                break;
            }
            if params.max_size > 0 && (win_w > params.max_size || win_h > params.max_size) {
                break;
            }
            if win_w >= params.min_size && win_h >= params.min_size {
                let scaled = bilinear_gray(gray, w, h, sw, sh);
                self.scan(&scaled, sw, sh, factor, win_w, win_h, &mut raw);
            }
            factor *= params.scale_factor;
        }
        Ok(group_rectangles(raw, params.min_neighbors, 0.2))
    }

    /// Scans one pyramid level, pushing hits in original-image pixels.
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        img: &[u8],
        w: usize,
        h: usize,
        factor: f64,
        win_w: usize,
        win_h: usize,
        out: &mut Vec<[i32; 4]>,
    ) {
        let stride = w + 1;
        // Integral images with a zero first row and column.
        let mut sum = vec![0i32; stride * (h + 1)];
        let mut sq = vec![0i64; stride * (h + 1)];
        for y in 0..h {
            let (mut rs, mut rq) = (0i32, 0i64);
            for x in 0..w {
                let v = i32::from(img[y * w + x]);
                rs += v;
                rq += i64::from(v * v);
                sum[(y + 1) * stride + x + 1] = sum[y * stride + x + 1] + rs;
                sq[(y + 1) * stride + x + 1] = sq[y * stride + x + 1] + rq;
            }
        }
        // Feature rects as integral-image offsets: [tl, tr, bl, br] and weight.
        let offs = |x: u32, y: u32, rw: u32, rh: u32| -> [usize; 4] {
            let (x, y, rw, rh) = (x as usize, y as usize, rw as usize, rh as usize);
            [
                y * stride + x,
                y * stride + x + rw,
                (y + rh) * stride + x,
                (y + rh) * stride + x + rw,
            ]
        };
        let feats: Vec<Vec<([usize; 4], f32)>> = self
            .features
            .iter()
            .map(|f| {
                f.rects
                    .iter()
                    .map(|&(x, y, rw, rh, wt)| (offs(x, y, rw, rh), wt))
                    .collect()
            })
            .collect();
        // OpenCV's normalisation rect: the window without a 1-pixel border.
        let nr = offs(1, 1, (self.win_w - 2) as u32, (self.win_h - 2) as u32);
        let area = ((self.win_w - 2) * (self.win_h - 2)) as f64;
        let step = if factor > 2.0 { 1 } else { 2 };
        let (pw, ph) = (w - self.win_w, h - self.win_h);
        let mut y = 0;
        while y < ph {
            let mut x = 0;
            while x < pw {
                let base = y * stride + x;
                let s = f64::from(
                    sum[base + nr[3]] - sum[base + nr[1]] - sum[base + nr[2]] + sum[base + nr[0]],
                );
                let q = (sq[base + nr[3]] - sq[base + nr[1]] - sq[base + nr[2]] + sq[base + nr[0]])
                    as f64;
                let nf = area * q - s * s;
                // OpenCV's setWindow: reject flat windows (std dev <= 10 grey levels).
                let result: i32 = if nf > 0.0 && area / nf.sqrt() < 0.1 {
                    let inv = (1.0 / nf.sqrt()) as f32;
                    let mut r = 1;
                    for (si, st) in self.stages.iter().enumerate() {
                        let mut acc = 0.0f32;
                        for stump in &self.stumps[st.first..st.first + st.count] {
                            let mut v = 0.0f32;
                            for (o, wt) in &feats[stump.feature] {
                                let rs = sum[base + o[3]] - sum[base + o[1]] - sum[base + o[2]]
                                    + sum[base + o[0]];
                                v += wt * rs as f32;
                            }
                            acc += if v * inv < stump.threshold {
                                stump.left
                            } else {
                                stump.right
                            };
                        }
                        if acc < st.threshold {
                            r = -(si as i32);
                            break;
                        }
                    }
                    r
                } else {
                    -1
                };
                if result > 0 {
                    out.push([
                        (x as f64 * factor).round() as i32,
                        (y as f64 * factor).round() as i32,
                        win_w as i32,
                        win_h as i32,
                    ]);
                }
                if result == 0 {
                    x += step;
                }
                x += step;
            }
            y += step;
        }
    }
}

/// Bilinear resize of a grey image (OpenCV `INTER_LINEAR` geometry: pixel centres
/// aligned, no antialiasing), as the cascade pyramid uses.
fn bilinear_gray(src: &[u8], w: usize, h: usize, dw: usize, dh: usize) -> Vec<u8> {
    let sx = w as f32 / dw as f32;
    let sy = h as f32 / dh as f32;
    let xs: Vec<(usize, usize, f32)> = (0..dw)
        .map(|x| {
            let f = ((x as f32 + 0.5) * sx - 0.5).max(0.0);
            let x0 = (f.floor() as usize).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            (x0, x1, f - x0 as f32)
        })
        .collect();
    let mut out = vec![0u8; dw * dh];
    for y in 0..dh {
        let f = ((y as f32 + 0.5) * sy - 0.5).max(0.0);
        let y0 = (f.floor() as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let fy = f - y0 as f32;
        let (r0, r1) = (&src[y0 * w..(y0 + 1) * w], &src[y1 * w..(y1 + 1) * w]);
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            let top = f32::from(r0[x0]) * (1.0 - fx) + f32::from(r0[x1]) * fx;
            let bot = f32::from(r1[x0]) * (1.0 - fx) + f32::from(r1[x1]) * fx;
            out[y * dw + x] = (top * (1.0 - fy) + bot * fy).round() as u8;
        }
    }
    out
}

/// OpenCV's `groupRectangles(rects, group_threshold, eps)`: clusters similar boxes,
/// averages each cluster, drops clusters with `<= group_threshold` members and small
/// boxes inside bigger ones.
fn group_rectangles(rects: Vec<[i32; 4]>, group_threshold: usize, eps: f64) -> Vec<Detection> {
    if group_threshold == 0 || rects.is_empty() {
        return rects
            .into_iter()
            .map(|r| Detection {
                rect: RectF {
                    x: r[0] as f32,
                    y: r[1] as f32,
                    w: r[2] as f32,
                    h: r[3] as f32,
                },
                neighbors: 1,
            })
            .collect();
    }
    let n = rects.len();
    let similar = |a: &[i32; 4], b: &[i32; 4]| {
        let delta = eps * f64::from(a[2].min(b[2]) + a[3].min(b[3])) * 0.5;
        f64::from((a[0] - b[0]).abs()) <= delta
            && f64::from((a[1] - b[1]).abs()) <= delta
            && f64::from((a[0] + a[2] - b[0] - b[2]).abs()) <= delta
            && f64::from((a[1] + a[3] - b[1] - b[3]).abs()) <= delta
    };
    // Union-find partition.
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            if similar(&rects[i], &rects[j]) {
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                if a != b {
                    parent[b] = a;
                }
            }
        }
    }
    let mut label = vec![usize::MAX; n];
    let mut classes: Vec<([f64; 4], usize)> = Vec::new();
    for (i, r) in rects.iter().enumerate() {
        let root = find(&mut parent, i);
        if label[root] == usize::MAX {
            label[root] = classes.len();
            classes.push(([0.0; 4], 0));
        }
        let c = &mut classes[label[root]];
        for (acc, &v) in c.0.iter_mut().zip(r) {
            *acc += f64::from(v);
        }
        c.1 += 1;
    }
    let avg: Vec<([i32; 4], usize)> = classes
        .iter()
        .map(|(s, cnt)| {
            let inv = 1.0 / *cnt as f64;
            (
                [
                    (s[0] * inv).round() as i32,
                    (s[1] * inv).round() as i32,
                    (s[2] * inv).round() as i32,
                    (s[3] * inv).round() as i32,
                ],
                *cnt,
            )
        })
        .collect();
    let mut out = Vec::new();
    for (i, (r1, n1)) in avg.iter().enumerate() {
        if *n1 <= group_threshold {
            continue;
        }
        let inside = avg.iter().enumerate().any(|(j, (r2, n2))| {
            if j == i || *n2 <= group_threshold {
                return false;
            }
            let dx = (f64::from(r2[2]) * eps).round() as i32;
            let dy = (f64::from(r2[3]) * eps).round() as i32;
            r1[0] >= r2[0] - dx
                && r1[1] >= r2[1] - dy
                && r1[0] + r1[2] <= r2[0] + r2[2] + dx
                && r1[1] + r1[3] <= r2[1] + r2[3] + dy
                && (*n2 > (*n1).max(3) || *n1 < 3)
        });
        if !inside {
            out.push(Detection {
                rect: RectF {
                    x: r1[0] as f32,
                    y: r1[1] as f32,
                    w: r1[2] as f32,
                    h: r1[3] as f32,
                },
                neighbors: *n1,
            });
        }
    }
    out
}

/// Multi-scale scan settings (OpenCV's `detectMultiScale` arguments).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectParams {
    /// Pyramid step, > 1 (default 1.1).
    pub scale_factor: f64,
    /// Hits a box needs to be kept, OpenCV's `minNeighbors` (default 5).
    pub min_neighbors: usize,
    /// Smallest box side in pixels of the detection image (default 0: the window, 24).
    pub min_size: usize,
    /// Largest box side in pixels of the detection image (default 0: no limit).
    pub max_size: usize,
}

impl Default for DetectParams {
    fn default() -> Self {
        Self {
            scale_factor: 1.1,
            min_neighbors: 5,
            min_size: 0,
            max_size: 0,
        }
    }
}

/// One detected box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// The box, pixels of the image given to [`Cascade::detect`].
    pub rect: RectF,
    /// Raw hits merged into it.
    pub neighbors: usize,
}

/// Face-crop settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaceConfig {
    /// Output crop side in pixels (default 224).
    pub crop_size: usize,
    /// Crop side as a multiple of the face box's longer side (default 1.3).
    pub margin: f32,
    /// Longest side of the downscaled grey image detection runs on, pixels (default 320).
    pub detect_max_side: usize,
    /// Run detection on every `every`-th frame (and the last), interpolating between
    /// (default 4; 1 = every frame).
    pub every: usize,
    /// Smallest face, as a fraction of the detection image's shorter side (default 0.1).
    pub min_face: f32,
    /// Cascade scan settings (`min_size` is overridden by `min_face`).
    pub detect: DetectParams,
}

impl Default for FaceConfig {
    fn default() -> Self {
        Self {
            crop_size: 224,
            margin: 1.3,
            detect_max_side: 320,
            every: 4,
            min_face: 0.1,
            detect: DetectParams::default(),
        }
    }
}

impl FaceConfig {
    /// Checks every field; the error names the one at fault.
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |m: String| Err(MediaError::Invalid(format!("face config: {m}")));
        if self.crop_size == 0 {
            return bad("crop_size must be > 0".into());
        }
        if !(self.margin.is_finite() && self.margin >= 1.0) {
            return bad(format!("margin must be >= 1, got {}", self.margin));
        }
        if self.detect_max_side < 48 {
            return bad(format!(
                "detect_max_side must be >= 48, got {}",
                self.detect_max_side
            ));
        }
        if self.every == 0 {
            return bad("every must be >= 1, got 0".into());
        }
        if !(self.min_face >= 0.0 && self.min_face < 1.0) {
            return bad(format!("min_face must be in [0, 1), got {}", self.min_face));
        }
        if self.detect.scale_factor.is_nan() || self.detect.scale_factor <= 1.0 {
            return bad(format!(
                "detect.scale_factor must be > 1, got {}",
                self.detect.scale_factor
            ));
        }
        Ok(())
    }
}

/// Where a frame's box came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxSource {
    /// Detected on this frame.
    Detected,
    /// Interpolated between two detections.
    Interpolated,
    /// Copied from the nearest detection (before the first / after the last).
    Held,
    /// No face in the clip: centre crop.
    Fallback,
}

/// Counters of one clip's face processing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceStats {
    /// Frames processed.
    pub frames: usize,
    /// Frames detection ran on.
    pub detections_run: usize,
    /// Of those, frames where a face was found.
    pub faces_found: usize,
    /// Frames with an interpolated box.
    pub interpolated: usize,
    /// Frames with a held box.
    pub held: usize,
    /// Frames cropped at the centre because the clip had no face.
    pub fallback_frames: usize,
}

/// Per-frame face boxes of a clip (pixels of the full frames).
#[derive(Clone, Debug, PartialEq)]
pub struct FaceTrack {
    /// The face box per frame (`None` only for fallback frames).
    pub boxes: Vec<Option<RectF>>,
    /// Where each box came from.
    pub sources: Vec<BoxSource>,
    /// Counters.
    pub stats: FaceStats,
}

/// The square crop region for a face box in a `w x h` frame: side
/// `min(margin * max(box.w, box.h), min(w, h))`, centred on the box, shifted inside the
/// frame.
pub fn face_square(face: &RectF, margin: f32, w: usize, h: usize) -> RectF {
    let (cx, cy) = face.center();
    let side = (margin * face.w.max(face.h)).min(w.min(h) as f32).max(1.0);
    let x = (cx - side / 2.0).clamp(0.0, w as f32 - side);
    let y = (cy - side / 2.0).clamp(0.0, h as f32 - side);
    RectF {
        x,
        y,
        w: side,
        h: side,
    }
}

/// The centre-crop fallback region: the largest centred square.
pub fn centre_square(w: usize, h: usize) -> RectF {
    let side = w.min(h) as f32;
    RectF {
        x: (w as f32 - side) / 2.0,
        y: (h as f32 - side) / 2.0,
        w: side,
        h: side,
    }
}

/// Detects faces in one RGB frame (`[h, w, 3]`) on a grey copy downscaled to
/// `cfg.detect_max_side`; boxes are returned in full-frame pixels.
pub fn detect_faces(
    cascade: &Cascade,
    rgb: &[u8],
    w: usize,
    h: usize,
    cfg: &FaceConfig,
) -> Result<Vec<Detection>, MediaError> {
    if rgb.len() != w * h * 3 {
        return Err(MediaError::Invalid(format!(
            "detect_faces: buffer of {} bytes is not {w} x {h} x 3",
            rgb.len()
        )));
    }
    let s = (cfg.detect_max_side as f32 / w.max(h) as f32).min(1.0);
    let (dw, dh) = (
        ((w as f32 * s).round() as usize).max(1),
        ((h as f32 * s).round() as usize).max(1),
    );
    let small = if s < 1.0 {
        crate::image_ops::resize(rgb, w, h, 3, dw, dh)?
    } else {
        rgb.to_vec()
    };
    let gray = rgb_to_gray(&small);
    let mut params = cfg.detect.clone();
    params.min_size = (cfg.min_face * dw.min(dh) as f32).round() as usize;
    let inv = 1.0 / s;
    Ok(cascade
        .detect(&gray, dw, dh, &params)?
        .into_iter()
        .map(|d| Detection {
            rect: RectF {
                x: d.rect.x * inv,
                y: d.rect.y * inv,
                w: d.rect.w * inv,
                h: d.rect.h * inv,
            },
            neighbors: d.neighbors,
        })
        .collect())
}

/// Tracks the face over `t` RGB frames (`frames`: `[t, h, w, 3]`): detection on every
/// `cfg.every`-th frame and the last, interpolation between, hold at the ends, centre
/// fallback when no face is found at all.
pub fn track_faces(
    cascade: &Cascade,
    frames: &[u8],
    t: usize,
    w: usize,
    h: usize,
    cfg: &FaceConfig,
) -> Result<FaceTrack, MediaError> {
    cfg.validate()?;
    let fsize = w * h * 3;
    if frames.len() != t * fsize || t == 0 {
        return Err(MediaError::Invalid(format!(
            "track_faces: buffer of {} bytes is not {t} x {h} x {w} x 3 (t > 0)",
            frames.len()
        )));
    }
    let mut key: Vec<usize> = (0..t).step_by(cfg.every).collect();
    if key.last() != Some(&(t - 1)) {
        key.push(t - 1);
    }
    let mut stats = FaceStats {
        frames: t,
        ..FaceStats::default()
    };
    let mut found: Vec<(usize, RectF)> = Vec::new();
    for &i in &key {
        let dets = detect_faces(cascade, &frames[i * fsize..(i + 1) * fsize], w, h, cfg)?;
        stats.detections_run += 1;
        let prev = found.last().map(|p| p.1);
        let best = match prev {
            Some(p) => dets
                .iter()
                .map(|d| (d.rect.iou(&p), d))
                .filter(|(iou, _)| *iou > 0.1)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, d)| d)
                .or_else(|| dets.iter().max_by(|a, b| area(a).total_cmp(&area(b)))),
            None => dets.iter().max_by(|a, b| area(a).total_cmp(&area(b))),
        };
        if let Some(d) = best {
            stats.faces_found += 1;
            found.push((i, d.rect));
        }
    }
    let mut boxes = vec![None; t];
    let mut sources = vec![BoxSource::Fallback; t];
    if found.is_empty() {
        stats.fallback_frames = t;
    } else {
        for (f, (b, s)) in boxes.iter_mut().zip(sources.iter_mut()).enumerate() {
            let k = found.partition_point(|p| p.0 <= f);
            let (rect, src) = if k > 0 && found[k - 1].0 == f {
                (found[k - 1].1, BoxSource::Detected)
            } else if k == 0 {
                (found[0].1, BoxSource::Held)
            } else if k == found.len() {
                (found[k - 1].1, BoxSource::Held)
            } else {
                let (a, b2) = (found[k - 1], found[k]);
                let u = (f - a.0) as f32 / (b2.0 - a.0) as f32;
                (a.1.lerp(&b2.1, u), BoxSource::Interpolated)
            };
            match src {
                BoxSource::Interpolated => stats.interpolated += 1,
                BoxSource::Held => stats.held += 1,
                _ => {}
            }
            *b = Some(rect);
            *s = src;
        }
    }
    Ok(FaceTrack {
        boxes,
        sources,
        stats,
    })
}

fn area(d: &Detection) -> f32 {
    d.rect.w * d.rect.h
}

/// Crops every frame around its tracked box (or the centre for fallback frames), resized
/// to `cfg.crop_size`: returns u8 `[t, crop_size, crop_size, 3]`.
pub fn crop_faces(
    frames: &[u8],
    t: usize,
    w: usize,
    h: usize,
    track: &FaceTrack,
    cfg: &FaceConfig,
) -> Result<Vec<u8>, MediaError> {
    let fsize = w * h * 3;
    if frames.len() != t * fsize || track.boxes.len() != t {
        return Err(MediaError::Invalid(format!(
            "crop_faces: {} bytes / {} boxes for {t} frames of {w} x {h}",
            frames.len(),
            track.boxes.len()
        )));
    }
    let s = cfg.crop_size;
    let mut out = Vec::with_capacity(t * s * s * 3);
    for (i, b) in track.boxes.iter().enumerate() {
        let roi = match b {
            Some(r) => face_square(r, cfg.margin, w, h),
            None => centre_square(w, h),
        };
        out.extend(resize_region(
            &frames[i * fsize..(i + 1) * fsize],
            w,
            h,
            3,
            roi,
            s,
            s,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_cascade_parses() {
        let c = Cascade::frontal_face();
        assert_eq!(c.window(), (24, 24));
        assert_eq!(c.num_stages(), 25);
        assert_eq!(c.stumps.len(), 2913);
        assert!(Cascade::from_xml("<opencv_storage></opencv_storage>").is_err());
        assert!(Cascade::from_xml(&FRONTAL_FACE_XML.replace("HAAR", "LBP")).is_err());
    }

    #[test]
    fn no_faces_in_noise_or_flat_images() {
        let c = Cascade::frontal_face();
        let flat = vec![128u8; 160 * 120];
        assert!(
            c.detect(&flat, 160, 120, &DetectParams::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn group_rectangles_merges_and_thresholds() {
        let mut r = vec![[10, 10, 24, 24]; 6];
        r.push([11, 10, 24, 24]);
        r.push([100, 100, 24, 24]); // lonely
        let g = group_rectangles(r, 3, 0.2);
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].neighbors, 7);
        assert_eq!(g[0].rect.x, 10.0);
    }

    #[test]
    fn crop_geometry() {
        // A 40x50 face at (100, 60) in a 320x240 frame: side 1.3 * 50 = 65, centred.
        let face = RectF {
            x: 100.0,
            y: 60.0,
            w: 40.0,
            h: 50.0,
        };
        let sq = face_square(&face, 1.3, 320, 240);
        assert!((sq.w - 65.0).abs() < 1e-4 && sq.w == sq.h);
        let (cx, cy) = sq.center();
        assert!((cx - 120.0).abs() < 1e-4 && (cy - 85.0).abs() < 1e-4);
        // Near the border: shifted inside.
        let edge = RectF {
            x: 0.0,
            y: 0.0,
            w: 40.0,
            h: 40.0,
        };
        let sq = face_square(&edge, 1.3, 320, 240);
        assert_eq!((sq.x, sq.y), (0.0, 0.0));
        // Larger than the frame: the shorter side.
        let big = RectF {
            x: 0.0,
            y: 0.0,
            w: 300.0,
            h: 230.0,
        };
        let sq = face_square(&big, 1.3, 320, 240);
        assert_eq!(sq.w, 240.0);
        assert!(sq.x >= 0.0 && sq.x + sq.w <= 320.0 && sq.y == 0.0);
        assert_eq!(
            centre_square(320, 240),
            RectF {
                x: 40.0,
                y: 0.0,
                w: 240.0,
                h: 240.0
            }
        );
    }

    #[test]
    fn crops_follow_the_box_and_fall_back_to_the_centre() {
        // Frame: black, with a white 20x20 square at (60, 10) in a 100x50 frame.
        let (w, h) = (100, 50);
        let mut f = vec![0u8; w * h * 3];
        for y in 10..30 {
            for x in 60..80 {
                f[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let cfg = FaceConfig {
            crop_size: 16,
            margin: 1.0,
            ..FaceConfig::default()
        };
        let track = FaceTrack {
            boxes: vec![Some(RectF {
                x: 60.0,
                y: 10.0,
                w: 20.0,
                h: 20.0,
            })],
            sources: vec![BoxSource::Detected],
            stats: FaceStats::default(),
        };
        let crop = crop_faces(&f, 1, w, h, &track, &cfg).unwrap();
        assert_eq!(crop.len(), 16 * 16 * 3);
        // The white square fills the crop (the antialiasing filter softens the outermost
        // pixel ring a little).
        for y in 0..16 {
            for x in 0..16 {
                let v = crop[(y * 16 + x) * 3];
                let inner = (1..15).contains(&x) && (1..15).contains(&y);
                assert!(if inner { v == 255 } else { v > 150 }, "({x}, {y}) = {v}");
            }
        }
        // No face anywhere: the tracker falls back to the centre for every frame.
        let frames = [f.clone(), f].concat();
        let track = track_faces(Cascade::frontal_face(), &frames, 2, w, h, &cfg).unwrap();
        assert_eq!(track.stats.fallback_frames, 2);
        assert!(track.boxes.iter().all(Option::is_none));
        let crop = crop_faces(&frames, 2, w, h, &track, &cfg).unwrap();
        // Centre square = x 25..75: the white square's left part shows on the right.
        let px = |x: usize, y: usize| crop[(y * 16 + x) * 3];
        assert_eq!(px(2, 8), 0);
        assert_eq!(px(14, 5), 255);
    }

    #[test]
    fn interpolation_between_detections() {
        let a = RectF {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        let b = RectF {
            x: 8.0,
            y: 4.0,
            w: 10.0,
            h: 10.0,
        };
        let m = a.lerp(&b, 0.25);
        assert_eq!((m.x, m.y), (2.0, 1.0));
    }
}
