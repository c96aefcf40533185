//! Synthetic audio-visual deepfake clips, built so that fusion matters.
//!
//! Each clip shows a cartoon "speaker" (background, face, eyes, a mouth whose opening
//! follows a speech envelope) and carries mono audio whose loudness follows a speech
//! envelope. The four [`ClipKind`]s are built so that:
//!
//! - [`ClipKind::VisualManipulation`] is visible from the video alone (blurred, recoloured
//!   or blended mouth); its audio matches its video like a real clip's;
//! - [`ClipKind::Desync`] (audio shifted by 3-6 frames) and [`ClipKind::AudioSwap`]
//!   (audio of another, independent speaker and envelope) are only detectable by
//!   comparing the mouth with the audio: their video is drawn from exactly the same
//!   distribution as a real clip's video, and their audio from exactly the same
//!   distribution as a real clip's audio;
//! - no fake kind is detectable from the audio alone.
//!
//! Audio windows are always cut from a longer, stationary envelope (with a burn-in), so a
//! shifted window never starts with artificial silence (a known dataset shortcut).
//!
//! Every clip is a pure function of `(config, kind, seed)`: randomness comes from
//! `ChaCha8Rng::seed_from_u64(seed)` with one ChaCha stream per component (appearance,
//! voice, envelope, ...), so e.g. a `Real` and a `Desync` clip with the same seed have
//! identical video. Bytes are stable across runs and thread counts; across platforms they
//! can only differ where the platform's `sin`/`exp`/`ln` differ in the last bit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cache::{CacheLayout, ClipMeta, ClipTensors, INDEX_FILE, MANIFEST_FILE, ShardWriter};
use crate::error::MediaError;
use crate::mel::{LogMel, MelConfig};

/// Settings of the synthetic generator.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SynthConfig {
    /// Video frames per clip, `T` (default 16).
    pub frames: usize,
    /// Frame height and width in pixels (square frames, default 64). All geometry scales
    /// with it; at least 16.
    pub image_size: usize,
    /// Video frame rate in frames per second (default 25); one frame lasts
    /// `sample_rate / fps` audio samples.
    pub fps: f32,
    /// Log-mel settings; `mel.sample_rate` is the audio sample rate (default 16 kHz).
    pub mel: MelConfig,
    /// Probability that a clip of a split is fake (default 0.5); fakes are split equally
    /// between the three fake kinds.
    pub fake_fraction: f32,
    /// Smallest audio shift of a `Desync` clip in video frames (default 3).
    pub min_offset_frames: usize,
    /// Largest audio shift of a `Desync` clip in video frames (default 6).
    pub max_offset_frames: usize,
    /// Standard deviation of the Gaussian pixel noise in u8 units (default 3).
    pub pixel_noise: f32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            frames: 16,
            image_size: 64,
            fps: 25.0,
            mel: MelConfig::default(),
            fake_fraction: 0.5,
            min_offset_frames: 3,
            max_offset_frames: 6,
            pixel_noise: 3.0,
        }
    }
}

impl SynthConfig {
    /// Checks every field; the error names the field at fault and its value.
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |msg: String| Err(MediaError::Invalid(format!("synth config: {msg}")));
        if self.frames == 0 {
            return bad("frames must be > 0, got 0".into());
        }
        if self.image_size < 16 || self.image_size > 4096 {
            return bad(format!(
                "image_size must be in 16..=4096 pixels, got {}",
                self.image_size
            ));
        }
        if !self.fps.is_finite() || self.fps <= 0.0 {
            return bad(format!("fps must be finite and > 0, got {}", self.fps));
        }
        self.mel.validate()?;
        if f64::from(self.fps) > f64::from(self.mel.sample_rate) {
            return bad(format!(
                "fps ({}) must not exceed mel.sample_rate ({})",
                self.fps, self.mel.sample_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.fake_fraction) {
            return bad(format!(
                "fake_fraction must be in [0, 1], got {}",
                self.fake_fraction
            ));
        }
        if self.min_offset_frames == 0 {
            return bad("min_offset_frames must be >= 1, got 0".into());
        }
        if self.max_offset_frames < self.min_offset_frames || self.max_offset_frames > 1000 {
            return bad(format!(
                "max_offset_frames must be in min_offset_frames ({})..=1000, got {}",
                self.min_offset_frames, self.max_offset_frames
            ));
        }
        if !self.pixel_noise.is_finite() || self.pixel_noise < 0.0 {
            return bad(format!(
                "pixel_noise must be finite and >= 0, got {}",
                self.pixel_noise
            ));
        }
        Ok(())
    }

    /// Audio samples per clip: `round(frames * sample_rate / fps)` (10240 by default).
    pub fn audio_samples(&self) -> usize {
        (self.frames as f64 * f64::from(self.mel.sample_rate) / f64::from(self.fps)).round()
            as usize
    }

    /// Mel frames (columns) per clip: `1 + audio_samples / hop_length` (65 by default).
    pub fn mel_frames(&self) -> usize {
        self.mel.n_frames(self.audio_samples())
    }

    /// Bytes of one clip's frames: `frames * 3 * image_size^2`.
    pub fn frames_len(&self) -> usize {
        self.frames * 3 * self.image_size * self.image_size
    }
}

/// What a clip is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipKind {
    /// Mouth and audio follow the same speech envelope.
    Real,
    /// Audio shifted by `min_offset_frames..=max_offset_frames` frames, either direction.
    Desync,
    /// The mouth region is manipulated (blur, recolour or blend); audio matches.
    VisualManipulation,
    /// The audio comes from another, independent speaker and envelope.
    AudioSwap,
}

impl ClipKind {
    /// All kinds, real first.
    pub const ALL: [ClipKind; 4] = [
        ClipKind::Real,
        ClipKind::Desync,
        ClipKind::VisualManipulation,
        ClipKind::AudioSwap,
    ];
    /// The fake kinds.
    pub const FAKES: [ClipKind; 3] = [
        ClipKind::Desync,
        ClipKind::VisualManipulation,
        ClipKind::AudioSwap,
    ];

    /// Binary label: 0 for `Real`, 1 for every fake kind.
    pub fn label(self) -> u8 {
        match self {
            ClipKind::Real => 0,
            _ => 1,
        }
    }

    /// The snake_case name used in manifests (`real`, `desync`, `visual_manipulation`,
    /// `audio_swap`).
    pub fn as_str(self) -> &'static str {
        match self {
            ClipKind::Real => "real",
            ClipKind::Desync => "desync",
            ClipKind::VisualManipulation => "visual_manipulation",
            ClipKind::AudioSwap => "audio_swap",
        }
    }
}

impl std::fmt::Display for ClipKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ClipKind {
    type Err = MediaError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClipKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                MediaError::Invalid(format!(
                    "unknown clip kind {s:?} (expected real, desync, visual_manipulation or audio_swap)"
                ))
            })
    }
}

/// One generated clip.
#[derive(Clone, Debug)]
pub struct Clip {
    /// What the clip is.
    pub kind: ClipKind,
    /// The seed it was generated from.
    pub seed: u64,
    /// RGB frames, u8, channel-first `[T, 3, H, W]`.
    pub frames: Vec<u8>,
    /// Mono audio at `mel.sample_rate`, `round(T * sample_rate / fps)` samples in [-1, 1].
    pub audio: Vec<f32>,
    /// Log-mel of `audio` in dB, row-major `[n_mels, n_mel_frames]`.
    pub mel: Vec<f32>,
    /// Kind-specific facts: `{}` for real, `{"offset_frames": i}` for desync (positive:
    /// the audio leads the video by that many frames), `{"manipulation": "blur" |
    /// "recolour" | "blend"}`, `{"audio_source": "independent"}` for audio swap.
    pub details: serde_json::Value,
}

impl Clip {
    /// Binary label of the clip (0 real, 1 fake).
    pub fn label(&self) -> u8 {
        self.kind.label()
    }
}

// ---------------------------------------------------------------------------------------
// Seeds and randomness.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64 finaliser of `x + golden`: a bijective, well-mixing map of u64.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64-bit FNV-1a of `bytes` (stable, unlike std's randomised hasher).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Seed of clip `index` of split `split` of a data set with seed `dataset_seed`:
/// splitmix64 mixing of the seed, the FNV-1a hash of the split name and the index.
/// Stable across platforms and versions.
pub fn clip_seed(dataset_seed: u64, split: &str, index: u64) -> u64 {
    let base = splitmix64(dataset_seed ^ fnv1a64(split.as_bytes()));
    splitmix64(base.wrapping_add(index.wrapping_mul(GOLDEN)))
}

// One ChaCha stream per component, so components never share draws.
const STREAM_KIND: u64 = 1;
const STREAM_APPEARANCE: u64 = 2;
const STREAM_VOICE: u64 = 3;
const STREAM_ENVELOPE: u64 = 4;
const STREAM_WINDOW: u64 = 5;
const STREAM_VIDEO_NOISE: u64 = 6;
const STREAM_AUDIO_NOISE: u64 = 7;
const STREAM_FAKE: u64 = 8;
const STREAM_SWAP_VOICE: u64 = 9;
const STREAM_SWAP_ENVELOPE: u64 = 10;

/// A ChaCha8 stream with the few distributions the generator needs, implemented here on
/// raw `u64`s so that values never depend on `rand`'s distribution algorithms.
struct Rng(ChaCha8Rng);

impl Rng {
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(stream);
        Rng(r)
    }
    fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    /// Uniform integer in lo..=hi.
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        let n = (hi - lo + 1) as u128;
        lo + ((u128::from(self.u64()) * n) >> 64) as usize
    }
    fn coin(&mut self) -> bool {
        self.u64() >> 63 == 1
    }
}

const NORMAL_BITS: u32 = 12;
const NORMAL_LEN: usize = 1 << NORMAL_BITS;

/// Inverse standard normal CDF (Acklam's rational approximation, rel. error < 1.2e-9).
fn inv_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const P_LOW: f64 = 0.02425;
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// 4096 equiprobable quantiles of N(0, 1), rescaled to unit variance: a fast, portable
/// Gaussian (tails truncated at about 3.5 sigma, which is harmless for pixel and audio
/// noise).
fn normal_table() -> &'static [f32; NORMAL_LEN] {
    static TABLE: OnceLock<[f32; NORMAL_LEN]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0.0f64; NORMAL_LEN];
        for (i, v) in t.iter_mut().enumerate() {
            *v = inv_normal_cdf((i as f64 + 0.5) / NORMAL_LEN as f64);
        }
        let var = t.iter().map(|v| v * v).sum::<f64>() / NORMAL_LEN as f64;
        let s = 1.0 / var.sqrt();
        let mut out = [0.0f32; NORMAL_LEN];
        for (o, v) in out.iter_mut().zip(t) {
            *o = (v * s) as f32;
        }
        out
    })
}

/// Adds `std * N(0, 1)` to every value of `out`, 4 normals per `u64` draw (one per
/// 16-bit lane, low 12 bits used).
fn add_normal_noise(rng: &mut Rng, std: f32, out: &mut [f32]) {
    let table = normal_table();
    let mask = (NORMAL_LEN - 1) as u64;
    for chunk in out.chunks_mut(4) {
        let bits = rng.u64();
        for (j, x) in chunk.iter_mut().enumerate() {
            *x += std * table[((bits >> (16 * j)) & mask) as usize];
        }
    }
}

/// Kind of the clip with seed `clip_seed` in a split: `Real` with probability
/// `1 - fake_fraction`, otherwise one of the three fake kinds with equal probability.
pub fn kind_for_seed(clip_seed: u64, fake_fraction: f32) -> ClipKind {
    let mut rng = Rng::new(clip_seed, STREAM_KIND);
    if rng.unit() >= f64::from(fake_fraction) {
        ClipKind::Real
    } else {
        ClipKind::FAKES[rng.int(0, 2)]
    }
}

// ---------------------------------------------------------------------------------------
// The speaker's appearance and the video.

type Rgb = [f32; 3];

/// Everything about the look of a speaker, all in pixels of the output frame.
#[derive(Clone, Debug)]
struct Appearance {
    bg: Rgb,
    skin: Rgb,
    face_c: (f32, f32),
    face_r: (f32, f32),
    eyes: [(f32, f32); 2],
    eye_r: f32,
    eye_col: Rgb,
    mouth_c: (f32, f32),
    /// Mouth half-width.
    mouth_a: f32,
    /// Mouth height when closed and when fully open.
    mouth_h: (f32, f32),
    lip: Rgb,
}

impl Appearance {
    fn draw(rng: &mut Rng, size: usize) -> Self {
        let n = size as f64;
        let s = n / 64.0;
        let bg = [0; 3].map(|_: i32| rng.uniform(30.0, 225.0) as f32);
        let t = rng.unit();
        let light = [235.0, 200.0, 170.0];
        let dark = [110.0, 75.0, 55.0];
        let skin = [0, 1, 2]
            .map(|c| (light[c] + (dark[c] - light[c]) * t + rng.uniform(-10.0, 10.0)) as f32);
        let cx = 0.5 * n + rng.uniform(-4.0, 4.0) * s;
        let cy = 0.47 * n + rng.uniform(-4.0, 4.0) * s;
        let rx = rng.uniform(0.28, 0.34) * n;
        let ry = rx * rng.uniform(1.15, 1.3);
        let ey = cy - rng.uniform(0.25, 0.35) * ry;
        let ex = rng.uniform(0.35, 0.45) * rx;
        let eye_r = rng.uniform(0.04, 0.055) * n;
        let g = rng.uniform(20.0, 60.0) as f32;
        let eye_col = [g, g, g * 1.1];
        let mouth_c = (
            cx + rng.uniform(-0.5, 0.5) * s,
            cy + rng.uniform(0.45, 0.55) * ry,
        );
        let mouth_a = 0.5 * rng.uniform(0.19, 0.21) * n;
        let lip = [
            rng.uniform(100.0, 140.0) as f32,
            rng.uniform(15.0, 35.0) as f32,
            rng.uniform(25.0, 45.0) as f32,
        ];
        Self {
            bg,
            skin,
            face_c: (cx as f32, cy as f32),
            face_r: (rx as f32, ry as f32),
            eyes: [(cx - ex) as f32, (cx + ex) as f32].map(|x| (x, ey as f32)),
            eye_r: eye_r as f32,
            eye_col,
            mouth_c: (mouth_c.0 as f32, mouth_c.1 as f32),
            mouth_a: mouth_a as f32,
            mouth_h: ((1.0 * s).max(0.5) as f32, (0.18 * n) as f32),
            lip,
        }
    }

    /// Mouth height in pixels for envelope value `e` in [0, 1].
    fn mouth_height(&self, e: f32) -> f32 {
        self.mouth_h.0 + (self.mouth_h.1 - self.mouth_h.0) * e.clamp(0.0, 1.0)
    }

    /// Pixel box `[x0, x1) x [y0, y1)` that contains the fully open mouth plus `margin`.
    fn mouth_region(&self, size: usize, margin: f32) -> (usize, usize, usize, usize) {
        let (cx, cy) = self.mouth_c;
        let hx = self.mouth_a + margin;
        let hy = 0.5 * self.mouth_h.1 + margin;
        let clampi = |v: f32| (v.max(0.0) as usize).min(size);
        (
            clampi((cx - hx).floor()),
            clampi((cx + hx).ceil() + 1.0),
            clampi((cy - hy).floor()),
            clampi((cy + hy).ceil() + 1.0),
        )
    }
}

/// Anti-aliased coverage in [0, 1] of pixel centre `(px, py)` by the ellipse centred at
/// `(cx, cy)` with half-axes `(a, b)`: `0.5 - signed distance`, the distance estimated as
/// `f / |grad f|` for `f = (dx/a)^2 + (dy/b)^2 - 1`.
fn ellipse_coverage(px: f32, py: f32, cx: f32, cy: f32, a: f32, b: f32) -> f32 {
    let dx = px - cx;
    let dy = py - cy;
    let (ia2, ib2) = (1.0 / (a * a), 1.0 / (b * b));
    let f = dx * dx * ia2 + dy * dy * ib2 - 1.0;
    let gx = 2.0 * dx * ia2;
    let gy = 2.0 * dy * ib2;
    let g = (gx * gx + gy * gy).sqrt();
    let d = if g > 1e-6 { f / g } else { -1e6 };
    (0.5 - d).clamp(0.0, 1.0)
}

/// A planar RGB float image `[3, n, n]`.
struct Canvas {
    n: usize,
    px: Vec<f32>,
}

impl Canvas {
    fn filled(n: usize, c: Rgb) -> Self {
        let mut px = vec![0.0; 3 * n * n];
        for (ch, plane) in px.chunks_mut(n * n).enumerate() {
            plane.fill(c[ch]);
        }
        Self { n, px }
    }

    /// Paints an anti-aliased ellipse of colour `col`.
    fn ellipse(&mut self, c: (f32, f32), a: f32, b: f32, col: Rgb) {
        let n = self.n;
        let x0 = ((c.0 - a - 2.0).floor().max(0.0) as usize).min(n);
        let x1 = ((c.0 + a + 2.0).ceil().max(0.0) as usize).min(n);
        let y0 = ((c.1 - b - 2.0).floor().max(0.0) as usize).min(n);
        let y1 = ((c.1 + b + 2.0).ceil().max(0.0) as usize).min(n);
        for y in y0..y1 {
            for x in x0..x1 {
                let cov = ellipse_coverage(x as f32 + 0.5, y as f32 + 0.5, c.0, c.1, a, b);
                if cov > 0.0 {
                    for (ch, &colour) in col.iter().enumerate() {
                        let p = &mut self.px[ch * n * n + y * n + x];
                        *p += (colour - *p) * cov;
                    }
                }
            }
        }
    }
}

/// The static part of a speaker's frame: background, face, eyes.
fn render_base(app: &Appearance, n: usize) -> Canvas {
    let mut c = Canvas::filled(n, app.bg);
    c.ellipse(app.face_c, app.face_r.0, app.face_r.1, app.skin);
    for e in app.eyes {
        c.ellipse(e, app.eye_r, app.eye_r, app.eye_col);
    }
    c
}

/// A mouth-region manipulation of a `VisualManipulation` clip.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Manipulation {
    /// Box blur (radius ~2 px at 64 px) of the mouth region.
    Blur,
    /// Lips drawn in a clearly different hue.
    Recolour(Rgb),
    /// Mouth region alpha-blended (0.6) with a fixed half-open mouth.
    Blend,
}

impl Manipulation {
    fn name(self) -> &'static str {
        match self {
            Manipulation::Blur => "blur",
            Manipulation::Recolour(_) => "recolour",
            Manipulation::Blend => "blend",
        }
    }

    fn draw(rng: &mut Rng) -> Self {
        match rng.int(0, 2) {
            0 => Manipulation::Blur,
            1 => {
                const HUES: [Rgb; 4] = [
                    [120.0, 40.0, 140.0], // purple
                    [40.0, 60.0, 150.0],  // blue
                    [50.0, 120.0, 60.0],  // green
                    [210.0, 120.0, 40.0], // orange
                ];
                let base = HUES[rng.int(0, HUES.len() - 1)];
                Manipulation::Recolour(base.map(|v| v + rng.uniform(-10.0, 10.0) as f32))
            }
            _ => Manipulation::Blend,
        }
    }
}

/// Separable box blur of radius `r` of the region `[x0, x1) x [y0, y1)` of every plane,
/// reading neighbours outside the region from the image (clamped at its border).
fn box_blur_region(c: &mut Canvas, region: (usize, usize, usize, usize), r: usize) {
    let n = c.n;
    let (x0, x1, y0, y1) = region;
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let norm = 1.0 / (2 * r + 1) as f32;
    // Rows needed for the vertical pass.
    let ry0 = y0.saturating_sub(r);
    let ry1 = (y1 + r).min(n);
    let w = x1 - x0;
    let mut tmp = vec![0.0f32; (ry1 - ry0) * w];
    for ch in 0..3 {
        let plane = &mut c.px[ch * n * n..(ch + 1) * n * n];
        for y in ry0..ry1 {
            for x in x0..x1 {
                let mut s = 0.0;
                for k in 0..=2 * r {
                    let xx = (x + k).saturating_sub(r).min(n - 1);
                    s += plane[y * n + xx];
                }
                tmp[(y - ry0) * w + (x - x0)] = s * norm;
            }
        }
        for y in y0..y1 {
            for x in x0..x1 {
                let mut s = 0.0;
                for k in 0..=2 * r {
                    let yy = (y + k).saturating_sub(r).clamp(ry0, ry1 - 1);
                    s += tmp[(yy - ry0) * w + (x - x0)];
                }
                plane[y * n + x] = s * norm;
            }
        }
    }
}

/// Renders the `T` frames `[T, 3, n, n]`: frame `t` shows mouth opening `env[t]`.
fn render_video(
    app: &Appearance,
    n: usize,
    env: &[f32],
    manip: Option<Manipulation>,
    pixel_noise: f32,
    noise_rng: &mut Rng,
) -> Vec<u8> {
    let base = render_base(app, n);
    let plane = 3 * n * n;
    let mut out = vec![0u8; env.len() * plane];
    let mut cur = Canvas {
        n,
        px: vec![0.0; plane],
    };
    let s = n as f32 / 64.0;
    let region = app.mouth_region(n, 3.0 * s);
    let lip = match manip {
        Some(Manipulation::Recolour(c)) => c,
        _ => app.lip,
    };
    let template = (manip == Some(Manipulation::Blend)).then(|| {
        let mut t = Canvas {
            n,
            px: base.px.clone(),
        };
        t.ellipse(
            app.mouth_c,
            app.mouth_a,
            0.5 * app.mouth_height(0.5),
            app.lip,
        );
        t
    });
    let blur_r = ((2.0 * s).round() as usize).max(1);
    let table = normal_table();
    let mask = (NORMAL_LEN - 1) as u64;
    for (t, &e) in env.iter().enumerate() {
        cur.px.copy_from_slice(&base.px);
        cur.ellipse(app.mouth_c, app.mouth_a, 0.5 * app.mouth_height(e), lip);
        match manip {
            Some(Manipulation::Blur) => box_blur_region(&mut cur, region, blur_r),
            Some(Manipulation::Blend) => {
                if let Some(tpl) = &template {
                    let (x0, x1, y0, y1) = region;
                    for ch in 0..3 {
                        for y in y0..y1 {
                            let row = ch * n * n + y * n;
                            for x in x0..x1 {
                                let i = row + x;
                                cur.px[i] = 0.4 * cur.px[i] + 0.6 * tpl.px[i];
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        let dst = &mut out[t * plane..(t + 1) * plane];
        if pixel_noise > 0.0 {
            // Fused noise + quantisation: 4 table indices per u64 draw.
            for (o4, v4) in dst.chunks_mut(4).zip(cur.px.chunks(4)) {
                let bits = noise_rng.u64();
                for (j, (o, &v)) in o4.iter_mut().zip(v4).enumerate() {
                    let z = table[((bits >> (16 * j)) & mask) as usize];
                    *o = (v + pixel_noise * z + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        } else {
            for (o, &v) in dst.iter_mut().zip(&cur.px) {
                *o = (v + 0.5).clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Speech envelope and voice.

/// Envelope value of a pause between syllables.
const GAP_LEVEL: (f64, f64) = (0.02, 0.04);
/// Syllable loudness range.
const SYLLABLE_LEVEL: (f64, f64) = (0.35, 1.0);
/// Frames of envelope generated and discarded before the first kept frame, so the kept
/// part is stationary (no clip starts on a syllable onset or with silence by design).
const BURN_IN: usize = 16;

/// A speech envelope at frame rate, `len` frames: syllables of 2-5 frames at a level in
/// [0.35, 1] (with a little per-frame jitter) separated by pauses of 1-4 frames at
/// ~0.03, durations random so it is not periodic.
fn speech_envelope(rng: &mut Rng, len: usize) -> Vec<f32> {
    let total = len + BURN_IN;
    let mut v = Vec::with_capacity(total + 5);
    // Start in a syllable with the long-run fraction of syllable time (3.5 / 6).
    let mut syllable = rng.unit() < 3.5 / 6.0;
    while v.len() < total {
        if syllable {
            let d = rng.int(2, 5);
            let a = rng.uniform(SYLLABLE_LEVEL.0, SYLLABLE_LEVEL.1);
            for _ in 0..d {
                let x = (a + rng.uniform(-0.05, 0.05)).clamp(SYLLABLE_LEVEL.0, SYLLABLE_LEVEL.1);
                v.push(x as f32);
            }
        } else {
            let d = rng.int(1, 4);
            for _ in 0..d {
                v.push(rng.uniform(GAP_LEVEL.0, GAP_LEVEL.1) as f32);
            }
        }
        syllable = !syllable;
    }
    v.truncate(total);
    v.split_off(BURN_IN)
}

/// Samples in one period of the voice's wavetable.
const WAVETABLE_LEN: usize = 1024;
/// Harmonics stop below this frequency (Hz).
const MAX_HARMONIC_HZ: f64 = 7500.0;

/// A speaker's voice: a harmonic source with slow pitch drift, shaped by 2-3 formants.
struct Voice {
    f0: f64,
    drift_rate: f64,
    drift_depth: f64,
    drift_phase: f64,
    phase0: f64,
    /// One period of the waveform, unit RMS.
    table: Vec<f32>,
    /// RMS of the voiced signal at envelope 1.
    level: f64,
}

impl Voice {
    fn draw(rng: &mut Rng, ifft: &dyn Fft<f64>) -> Self {
        let f0 = rng.uniform(100.0, 250.0);
        let drift_rate = rng.uniform(0.5, 2.0);
        let drift_depth = rng.uniform(0.02, 0.06);
        let drift_phase = rng.uniform(0.0, std::f64::consts::TAU);
        let phase0 = rng.unit();
        let n_formants = rng.int(2, 3);
        let ranges = [(300.0, 850.0), (900.0, 2300.0), (2400.0, 3500.0)];
        let gains = [(1.0, 1.0), (0.3, 0.8), (0.1, 0.4)];
        let formants: Vec<(f64, f64, f64)> = (0..n_formants)
            .map(|j| {
                (
                    rng.uniform(ranges[j].0, ranges[j].1),
                    rng.uniform(60.0, 160.0),
                    rng.uniform(gains[j].0, gains[j].1),
                )
            })
            .collect();
        let kmax = ((MAX_HARMONIC_HZ / (f0 * (1.0 + drift_depth))) as usize)
            .clamp(1, WAVETABLE_LEN / 2 - 1);
        let mut spec = vec![Complex::new(0.0f64, 0.0); WAVETABLE_LEN];
        for k in 1..=kmax {
            let fk = k as f64 * f0;
            let shape: f64 = formants
                .iter()
                .map(|&(fc, bw, g)| g / (1.0 + ((fk - fc) / bw).powi(2)))
                .sum::<f64>()
                + 0.01;
            let amp = shape / (k as f64).sqrt();
            let ph = rng.uniform(0.0, std::f64::consts::TAU);
            spec[k] = Complex::from_polar(amp, ph);
            spec[WAVETABLE_LEN - k] = spec[k].conj();
        }
        ifft.process(&mut spec);
        let rms = (spec.iter().map(|c| c.re * c.re).sum::<f64>() / WAVETABLE_LEN as f64).sqrt();
        let table = spec
            .iter()
            .map(|c| (c.re / rms.max(1e-300)) as f32)
            .collect();
        // Speech level: -22 dBFS RMS at full loudness, +-4 dB per speaker.
        let level = 0.08 * 10f64.powf(rng.uniform(-4.0, 4.0) / 20.0);
        Self {
            f0,
            drift_rate,
            drift_depth,
            drift_phase,
            phase0,
            table,
            level,
        }
    }
}

/// Noise floor of the audio relative to the speech level at full loudness.
const NOISE_FLOOR_DB: f64 = -45.0;

/// Audio of `n_samples` samples whose loudness follows `env[a0 + 1 + t]` at the centre
/// of video frame `t` (linear interpolation between frame centres, so no clicks), plus a
/// white noise floor at -45 dB.
#[allow(clippy::too_many_arguments)]
fn render_audio(
    voice: &Voice,
    env: &[f32],
    a0: usize,
    n_samples: usize,
    samples_per_frame: f64,
    sample_rate: f64,
    noise_rng: &mut Rng,
) -> Vec<f32> {
    let p = WAVETABLE_LEN as f64;
    let mut phase = voice.phase0 * p;
    let mut out = vec![0.0f32; n_samples];
    let last = env.len().saturating_sub(2);
    let drift_w = std::f64::consts::TAU * voice.drift_rate / sample_rate;
    let mut f = voice.f0;
    for (s, o) in out.iter_mut().enumerate() {
        // Pitch drift is slow (<= 2 Hz): update it every 16 samples (1 ms at 16 kHz).
        if s % 16 == 0 {
            f = voice.f0
                * (1.0 + voice.drift_depth * (drift_w * s as f64 + voice.drift_phase).sin());
        }
        let u = (s as f64 + 0.5) / samples_per_frame - 0.5;
        let fl = u.floor();
        let frac = u - fl;
        let i = ((a0 as f64 + 1.0 + fl).max(0.0) as usize).min(last);
        let loud = f64::from(env[i]) * (1.0 - frac) + f64::from(env[i + 1]) * frac;
        phase += f / sample_rate * p;
        if phase >= p {
            phase -= p;
        }
        let j = phase as usize % WAVETABLE_LEN;
        let fr = (phase - phase.floor()) as f32;
        let a = voice.table[j];
        let b = voice.table[(j + 1) % WAVETABLE_LEN];
        let x = a + (b - a) * fr;
        *o = (f64::from(x) * loud * voice.level) as f32;
    }
    let noise_rms = voice.level * 10f64.powf(NOISE_FLOOR_DB / 20.0);
    add_normal_noise(noise_rng, noise_rms as f32, &mut out);
    out.iter_mut().for_each(|x| *x = x.clamp(-1.0, 1.0));
    out
}

// ---------------------------------------------------------------------------------------
// Clip generation.

/// A clip generator for one [`SynthConfig`]: holds the log-mel extractor and FFT plan so
/// that generating many clips (from many threads, it is `Sync`) does not rebuild them.
pub struct ClipGenerator {
    cfg: SynthConfig,
    logmel: LogMel,
    ifft: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for ClipGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipGenerator")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl ClipGenerator {
    /// Validates `cfg` and builds the extractor.
    pub fn new(cfg: &SynthConfig) -> Result<Self, MediaError> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            logmel: LogMel::new(&cfg.mel)?,
            ifft: FftPlanner::<f64>::new().plan_fft_inverse(WAVETABLE_LEN),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    /// Generates the clip of `kind` for `seed` (a pure function of config, kind, seed).
    pub fn generate(&self, kind: ClipKind, seed: u64) -> Clip {
        let cfg = &self.cfg;
        let t_len = cfg.frames;
        let m = cfg.max_offset_frames;
        // Envelope frames: 1 of margin before, room for shifts of up to m both ways
        // around the video window, T frames, 1 frame of margin after.
        let env_len = t_len + 2 * m + 4;
        let n = cfg.image_size;

        let mut app_rng = Rng::new(seed, STREAM_APPEARANCE);
        let app = Appearance::draw(&mut app_rng, n);
        let mut env_rng = Rng::new(seed, STREAM_ENVELOPE);
        let env = speech_envelope(&mut env_rng, env_len);
        let mut win_rng = Rng::new(seed, STREAM_WINDOW);
        let v0 = m + win_rng.int(0, 2);
        let mut fake_rng = Rng::new(seed, STREAM_FAKE);

        let mut manip = None;
        let mut a0 = v0;
        let mut audio_env: Option<Vec<f32>> = None;
        let mut voice_stream = STREAM_VOICE;
        let details = match kind {
            ClipKind::Real => json!({}),
            ClipKind::Desync => {
                let off = fake_rng.int(cfg.min_offset_frames, m);
                if fake_rng.coin() {
                    a0 = v0 + off;
                    json!({ "offset_frames": off as i64 })
                } else {
                    a0 = v0 - off;
                    json!({ "offset_frames": -(off as i64) })
                }
            }
            ClipKind::VisualManipulation => {
                let mk = Manipulation::draw(&mut fake_rng);
                manip = Some(mk);
                json!({ "manipulation": mk.name() })
            }
            ClipKind::AudioSwap => {
                let mut r = Rng::new(seed, STREAM_SWAP_ENVELOPE);
                audio_env = Some(speech_envelope(&mut r, env_len));
                voice_stream = STREAM_SWAP_VOICE;
                json!({ "audio_source": "independent" })
            }
        };

        let mut vn_rng = Rng::new(seed, STREAM_VIDEO_NOISE);
        let frames = render_video(
            &app,
            n,
            &env[v0 + 1..v0 + 1 + t_len],
            manip,
            cfg.pixel_noise,
            &mut vn_rng,
        );

        let mut voice_rng = Rng::new(seed, voice_stream);
        let voice = Voice::draw(&mut voice_rng, self.ifft.as_ref());
        let sr = f64::from(cfg.mel.sample_rate);
        let spf = sr / f64::from(cfg.fps);
        let mut an_rng = Rng::new(seed, STREAM_AUDIO_NOISE);
        let audio = render_audio(
            &voice,
            audio_env.as_deref().unwrap_or(&env),
            a0,
            cfg.audio_samples(),
            spf,
            sr,
            &mut an_rng,
        );
        let mel = self.logmel.compute(&audio);
        Clip {
            kind,
            seed,
            frames,
            audio,
            mel,
            details,
        }
    }
}

/// Generates the clip of `kind` for `seed` with `cfg`: a pure function of its arguments.
///
/// Builds a [`ClipGenerator`] per call; prefer one generator for many clips.
///
/// # Panics
/// If `cfg` fails [`SynthConfig::validate`]; use [`ClipGenerator::new`] to get the error
/// instead.
pub fn generate_clip(cfg: &SynthConfig, kind: ClipKind, seed: u64) -> Clip {
    match ClipGenerator::new(cfg) {
        Ok(g) => g.generate(kind, seed),
        Err(e) => panic!("generate_clip: invalid SynthConfig: {e}"),
    }
}

/// What [`synth_split`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSummary {
    /// Split name.
    pub split: String,
    /// Number of clips written.
    pub clips: usize,
    /// Clips per kind name (`real`, `desync`, ...); kinds with no clip are listed with 0.
    pub per_kind: BTreeMap<String, usize>,
    /// Total bytes of all files written (shards, index, manifest).
    pub bytes: u64,
}

/// Checks that `split` is usable as a directory name and clip-id prefix.
pub(crate) fn validate_split_name(split: &str) -> Result<(), MediaError> {
    let ok = !split.is_empty()
        && split != "."
        && split != ".."
        && split
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(MediaError::Invalid(format!(
            "split name {split:?} must be non-empty and use only ASCII letters, digits, '_', '-', '.'"
        )))
    }
}

/// Generates `n_clips` clips of split `split` and writes them as a cache split (see
/// [`crate::cache`]) into `out_dir/<split>/`.
///
/// Clip `i` has seed [`clip_seed`]`(seed, split, i)`, kind [`kind_for_seed`] of that
/// seed, and id `"<split>-<i:06>"`. Clips are generated in parallel (rayon) one shard at a
/// time while the previous shard is written; the output does not depend on the thread
/// count. `progress` is called with the number of clips just finished (1 per clip, from
/// worker threads).
pub fn synth_split(
    cfg: &SynthConfig,
    out_dir: &Path,
    split: &str,
    n_clips: usize,
    seed: u64,
    shard_size: usize,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<SplitSummary, MediaError> {
    validate_split_name(split)?;
    if shard_size == 0 {
        return Err(MediaError::Invalid("shard_size must be > 0, got 0".into()));
    }
    let generator = ClipGenerator::new(cfg)?;
    let dir = out_dir.join(split);
    std::fs::create_dir_all(&dir).map_err(|e| MediaError::io(&dir, e))?;
    let mut writer = ShardWriter::create(&dir, split, CacheLayout::from_synth(cfg), shard_size)?;
    let mut per_kind: BTreeMap<String, usize> = ClipKind::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), 0))
        .collect();
    tracing::info!(split, n_clips, seed, shard_size, dir = %dir.display(), "generating synthetic split");

    let generate = |start: usize| -> Vec<Clip> {
        let end = (start + shard_size).min(n_clips);
        (start..end)
            .into_par_iter()
            .map(|i| {
                let s = clip_seed(seed, split, i as u64);
                let clip = generator.generate(kind_for_seed(s, cfg.fake_fraction), s);
                progress(1);
                clip
            })
            .collect()
    };
    let write =
        |writer: &mut ShardWriter, start: usize, clips: Vec<Clip>| -> Result<(), MediaError> {
            for (j, clip) in clips.into_iter().enumerate() {
                let meta = ClipMeta {
                    kind: clip.kind.as_str().to_string(),
                    seed: clip.seed,
                    details: clip.details,
                };
                writer.push_with_audio(
                    &format!("{split}-{:06}", start + j),
                    ClipTensors {
                        frames: &clip.frames,
                        mel: &clip.mel,
                        audio: &clip.audio,
                    },
                    clip.kind.label(),
                    true,
                    true,
                    meta,
                )?;
            }
            Ok(())
        };

    let mut pending: Option<(usize, Vec<Clip>)> = None;
    let mut next = 0;
    while next < n_clips || pending.is_some() {
        let gen_start = (next < n_clips).then_some(next);
        let (written, generated) = rayon::join(
            || match pending.take() {
                Some((start, clips)) => write(&mut writer, start, clips),
                None => Ok(()),
            },
            || gen_start.map(|s| (s, generate(s))),
        );
        written?;
        if let Some((s, clips)) = generated {
            for c in &clips {
                *per_kind.entry(c.kind.as_str().to_string()).or_insert(0) += 1;
            }
            next = s + clips.len();
            pending = Some((s, clips));
        }
    }
    let index = writer.finish()?;
    let mut bytes = 0u64;
    let names = index
        .shards
        .iter()
        .map(|s| s.file.as_str())
        .chain([INDEX_FILE, MANIFEST_FILE]);
    for name in names {
        let f = dir.join(name);
        let meta = std::fs::metadata(&f).map_err(|e| MediaError::io(&f, e))?;
        bytes += meta.len();
    }
    tracing::info!(split, n_clips, bytes, ?per_kind, "synthetic split written");
    Ok(SplitSummary {
        split: split.to_string(),
        clips: n_clips,
        per_kind,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_stable_and_distinct() {
        // Pinned values: changing them changes every generated data set.
        assert_eq!(fnv1a64(b""), 0xCBF2_9CE4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xAF63_DC4C_8601_EC8C);
        let a = clip_seed(7, "train", 0);
        assert_eq!(a, clip_seed(7, "train", 0));
        assert_ne!(a, clip_seed(7, "train", 1));
        assert_ne!(a, clip_seed(7, "val", 0));
        assert_ne!(a, clip_seed(8, "train", 0));
    }

    #[test]
    fn normal_table_is_standard() {
        let t = normal_table();
        let mean = t.iter().map(|&v| f64::from(v)).sum::<f64>() / t.len() as f64;
        let var = t.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / t.len() as f64;
        assert!(
            mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5,
            "{mean} {var}"
        );
        assert!((inv_normal_cdf(0.975) - 1.959_963_985).abs() < 1e-7);
        assert!((inv_normal_cdf(0.001) + 3.090_232_306).abs() < 1e-7);
    }

    #[test]
    fn kind_mix_follows_fake_fraction() {
        let mut counts = BTreeMap::new();
        for i in 0..4000 {
            *counts
                .entry(kind_for_seed(clip_seed(1, "x", i), 0.5))
                .or_insert(0usize) += 1;
        }
        assert!(
            (1850..2150).contains(&counts[&ClipKind::Real]),
            "{counts:?}"
        );
        for k in ClipKind::FAKES {
            assert!((560..780).contains(&counts[&k]), "{counts:?}");
        }
        assert_eq!(kind_for_seed(3, 0.0), ClipKind::Real);
        assert_ne!(kind_for_seed(3, 1.0), ClipKind::Real);
    }

    #[test]
    fn envelope_levels_and_runs() {
        let mut rng = Rng::new(5, 99);
        let env = speech_envelope(&mut rng, 4000);
        let mut run = 1;
        let mut runs = Vec::new();
        for w in env.windows(2) {
            let same = (w[0] >= 0.3) == (w[1] >= 0.3);
            if same {
                run += 1;
            } else {
                runs.push((w[0] >= 0.3, run));
                run = 1;
            }
        }
        for &(syl, r) in &runs[1..] {
            if syl {
                assert!((2..=5).contains(&r), "syllable run {r}");
            } else {
                assert!((1..=4).contains(&r), "gap run {r}");
            }
        }
        assert!(env.iter().all(|&v| (0.02..=1.0).contains(&v)));
    }

    #[test]
    fn kind_str_round_trip() {
        for k in ClipKind::ALL {
            assert_eq!(k.as_str().parse::<ClipKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert!("fake".parse::<ClipKind>().is_err());
    }

    #[test]
    fn validate_names_fields() {
        let c = SynthConfig {
            max_offset_frames: 2,
            ..SynthConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("max_offset_frames")
        );
        let c = SynthConfig {
            image_size: 8,
            ..SynthConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("image_size"));
        let c = SynthConfig {
            fake_fraction: 1.5,
            ..SynthConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("fake_fraction")
        );
        assert!(validate_split_name("../x").is_err());
        assert!(validate_split_name("train").is_ok());
    }
}
