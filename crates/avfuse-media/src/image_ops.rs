//! Small image kernels on interleaved `u8` buffers: antialiased resizing of a region,
//! grey conversion, layout changes.
//!
//! Images are row-major, interleaved: pixel `(x, y)` channel `c` of a `w x h` image with
//! `ch` channels is at `(y * w + x) * ch + c`.

use crate::error::MediaError;

/// A rectangle in pixel coordinates (floating point: sub-pixel regions are allowed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RectF {
    /// Left edge, pixels.
    pub x: f32,
    /// Top edge, pixels.
    pub y: f32,
    /// Width, pixels.
    pub w: f32,
    /// Height, pixels.
    pub h: f32,
}

impl RectF {
    /// Centre `(cx, cy)`.
    pub fn center(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    /// Intersection over union with `other` (0 when either is empty).
    pub fn iou(&self, other: &RectF) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.w).min(other.x + other.w);
        let y1 = (self.y + self.h).min(other.y + other.h);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.w * self.h + other.w * other.h - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// Linear interpolation `self + t * (other - self)` of every coordinate.
    pub fn lerp(&self, other: &RectF, t: f32) -> RectF {
        RectF {
            x: self.x + t * (other.x - self.x),
            y: self.y + t * (other.y - self.y),
            w: self.w + t * (other.w - self.w),
            h: self.h + t * (other.h - self.h),
        }
    }
}

/// Filter taps of one output pixel along one axis.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// PIL-style antialiased bilinear (triangle) taps mapping `[x0, x0 + len)` of a source
/// axis of `src_len` pixels onto `dst_len` output pixels. Source positions outside the
/// image are clamped to the edge pixel (border replication).
fn taps(src_len: usize, x0: f32, len: f32, dst_len: usize) -> Vec<Taps> {
    let scale = f64::from(len) / dst_len as f64;
    let support = scale.max(1.0);
    let last = src_len as i64 - 1;
    (0..dst_len)
        .map(|i| {
            let center = f64::from(x0) + (i as f64 + 0.5) * scale;
            let lo = (center - support).floor() as i64;
            let hi = (center + support).ceil() as i64;
            let mut w: Vec<(usize, f64)> = Vec::with_capacity((hi - lo + 1) as usize);
            for j in lo..=hi {
                let d = ((j as f64 + 0.5 - center) / support).abs();
                if d < 1.0 {
                    w.push((j.clamp(0, last) as usize, 1.0 - d));
                }
            }
            if w.is_empty() {
                w.push(((center.floor() as i64).clamp(0, last) as usize, 1.0));
            }
            // Merge clamped duplicates into a dense run starting at the smallest index.
            let start = w.iter().map(|p| p.0).min().unwrap_or(0);
            let end = w.iter().map(|p| p.0).max().unwrap_or(0);
            let mut dense = vec![0.0f64; end - start + 1];
            for (j, v) in &w {
                dense[j - start] += v;
            }
            let sum: f64 = dense.iter().sum();
            Taps {
                start,
                weights: dense.iter().map(|v| (v / sum) as f32).collect(),
            }
        })
        .collect()
}

/// Resizes the region `roi` of the `w x h`, `ch`-channel image `src` to `dw x dh`, with
/// an antialiased bilinear filter (area-like when shrinking, bilinear when enlarging).
/// Parts of `roi` outside the image replicate the border pixels.
pub fn resize_region(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    roi: RectF,
    dw: usize,
    dh: usize,
) -> Result<Vec<u8>, MediaError> {
    if w == 0 || h == 0 || ch == 0 || src.len() != w * h * ch {
        return Err(MediaError::Invalid(format!(
            "resize: buffer of {} bytes is not {w} x {h} x {ch}",
            src.len()
        )));
    }
    if dw == 0 || dh == 0 || !(roi.w > 0.0 && roi.h > 0.0) {
        return Err(MediaError::Invalid(format!(
            "resize: empty output {dw} x {dh} or region {roi:?}"
        )));
    }
    let tx = taps(w, roi.x, roi.w, dw);
    let ty = taps(h, roi.y, roi.h, dh);
    let row_lo = ty.iter().map(|t| t.start).min().unwrap_or(0);
    let row_hi = ty
        .iter()
        .map(|t| t.start + t.weights.len())
        .max()
        .unwrap_or(0);
    // Horizontal pass over the rows the vertical pass needs.
    let mut tmp = vec![0.0f32; (row_hi - row_lo) * dw * ch];
    for y in row_lo..row_hi {
        let srow = &src[y * w * ch..(y + 1) * w * ch];
        let trow = &mut tmp[(y - row_lo) * dw * ch..(y - row_lo + 1) * dw * ch];
        for (x, t) in tx.iter().enumerate() {
            let out = &mut trow[x * ch..(x + 1) * ch];
            for (k, &wt) in t.weights.iter().enumerate() {
                let p = &srow[(t.start + k) * ch..(t.start + k + 1) * ch];
                for c in 0..ch {
                    out[c] += wt * f32::from(p[c]);
                }
            }
        }
    }
    let mut dst = vec![0u8; dw * dh * ch];
    let mut acc = vec![0.0f32; dw * ch];
    for (y, t) in ty.iter().enumerate() {
        acc.iter_mut().for_each(|a| *a = 0.0);
        for (k, &wt) in t.weights.iter().enumerate() {
            let r = t.start + k - row_lo;
            let trow = &tmp[r * dw * ch..(r + 1) * dw * ch];
            for (a, &v) in acc.iter_mut().zip(trow) {
                *a += wt * v;
            }
        }
        for (d, &a) in dst[y * dw * ch..(y + 1) * dw * ch].iter_mut().zip(&acc) {
            *d = a.round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(dst)
}

/// Resizes a whole image (see [`resize_region`]).
pub fn resize(
    src: &[u8],
    w: usize,
    h: usize,
    ch: usize,
    dw: usize,
    dh: usize,
) -> Result<Vec<u8>, MediaError> {
    let roi = RectF {
        x: 0.0,
        y: 0.0,
        w: w as f32,
        h: h as f32,
    };
    resize_region(src, w, h, ch, roi, dw, dh)
}

/// RGB to grey with OpenCV's `COLOR_RGB2GRAY` weights (BT.601, 14-bit fixed point):
/// `Y = (4899 R + 9617 G + 1868 B + 8192) >> 14`. `rgb` is `[h, w, 3]`; returns `[h, w]`.
pub fn rgb_to_gray(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| {
            ((4899 * u32::from(p[0]) + 9617 * u32::from(p[1]) + 1868 * u32::from(p[2]) + 8192)
                >> 14) as u8
        })
        .collect()
}

/// `[T, H, W, C]` interleaved to `[T, C, H, W]` planar (the cache's frame layout).
pub fn hwc_to_chw(src: &[u8], t: usize, h: usize, w: usize, c: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    let plane = h * w;
    for f in 0..t {
        let s = &src[f * plane * c..(f + 1) * plane * c];
        let d = &mut out[f * plane * c..(f + 1) * plane * c];
        for (i, px) in s.chunks_exact(c).enumerate() {
            for (k, &v) in px.iter().enumerate() {
                d[k * plane + i] = v;
            }
        }
    }
    out
}

/// `[T, C, H, W]` planar to `[T, H, W, C]` interleaved: the inverse of [`hwc_to_chw`].
pub fn chw_to_hwc(src: &[u8], t: usize, h: usize, w: usize, c: usize) -> Vec<u8> {
    let mut out = vec![0u8; src.len()];
    let plane = h * w;
    for f in 0..t {
        let s = &src[f * plane * c..(f + 1) * plane * c];
        let d = &mut out[f * plane * c..(f + 1) * plane * c];
        for (i, px) in d.chunks_exact_mut(c).enumerate() {
            for (k, v) in px.iter_mut().enumerate() {
                *v = s[k * plane + i];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chw_to_hwc_inverts_hwc_to_chw() {
        let (t, h, w, c) = (2, 3, 5, 3);
        let hwc: Vec<u8> = (0..t * h * w * c).map(|i| (i * 11 % 256) as u8).collect();
        let chw = hwc_to_chw(&hwc, t, h, w, c);
        // Channel 1 of frame 1, pixel (row 2, col 4), read from both layouts.
        assert_eq!(
            chw[(3 + 1) * h * w + 2 * w + 4],
            hwc[((h + 2) * w + 4) * c + 1]
        );
        assert_eq!(chw_to_hwc(&chw, t, h, w, c), hwc);
    }

    #[test]
    fn identity_resize_is_exact() {
        let src: Vec<u8> = (0..(7 * 5 * 3)).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize(&src, 7, 5, 3, 7, 5).unwrap(), src);
    }

    #[test]
    fn shrinking_a_constant_keeps_it_and_region_selects() {
        let src = vec![100u8; 64 * 48];
        assert!(
            resize(&src, 64, 48, 1, 5, 3)
                .unwrap()
                .iter()
                .all(|&v| v == 100)
        );
        // Left half black, right half white: a region inside the right half is white.
        let mut img = vec![0u8; 20 * 10];
        for y in 0..10 {
            for x in 10..20 {
                img[y * 20 + x] = 255;
            }
        }
        let roi = RectF {
            x: 12.0,
            y: 2.0,
            w: 6.0,
            h: 6.0,
        };
        assert!(
            resize_region(&img, 20, 10, 1, roi, 3, 3)
                .unwrap()
                .iter()
                .all(|&v| v == 255)
        );
    }

    #[test]
    fn out_of_image_region_replicates_border() {
        let img = vec![42u8; 4 * 4 * 3];
        let roi = RectF {
            x: -3.0,
            y: -3.0,
            w: 10.0,
            h: 10.0,
        };
        assert!(
            resize_region(&img, 4, 4, 3, roi, 8, 8)
                .unwrap()
                .iter()
                .all(|&v| v == 42)
        );
    }

    #[test]
    fn gray_and_layout() {
        assert_eq!(rgb_to_gray(&[255, 255, 255, 0, 0, 0]), vec![255, 0]);
        // OpenCV: cvtColor([[[10, 200, 30]]], RGB2GRAY) == 124.
        assert_eq!(rgb_to_gray(&[10, 200, 30]), vec![124]);
        let hwc = vec![1, 2, 3, 4, 5, 6]; // 1x2 image, 3 channels
        assert_eq!(hwc_to_chw(&hwc, 1, 1, 2, 3), vec![1, 4, 2, 5, 3, 6]);
    }

    #[test]
    fn iou_and_lerp() {
        let a = RectF {
            x: 0.0,
            y: 0.0,
            w: 2.0,
            h: 2.0,
        };
        let b = RectF {
            x: 1.0,
            y: 0.0,
            w: 2.0,
            h: 2.0,
        };
        assert!((a.iou(&b) - 2.0 / 6.0).abs() < 1e-6);
        assert_eq!(a.lerp(&b, 0.5).x, 0.5);
    }
}
