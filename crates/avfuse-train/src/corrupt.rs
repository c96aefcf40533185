//! Test-time corruptions for the robustness report of `avfuse eval`: Gaussian pixel noise,
//! Gaussian blur, JPEG re-compression, and additive white noise at a given audio SNR.
//!
//! They act on a prepared [`HostBatch`] (the normalised model input) of a cached split, after
//! the modality set has been applied, and only on rows where the corrupted modality is
//! present. Each clip's noise is drawn from its own ChaCha8 stream seeded by
//! `(seed, clip index)`, so a report is reproducible and independent of the batch size.
//!
//! Units:
//! - `noise`: standard deviation on the `[0, 1]` pixel scale (0.1 = 25.5 grey levels);
//!   pixels are clamped back to `[0, 1]`.
//! - `blur`: Gaussian standard deviation in pixels of the cached crop (kernel radius
//!   `ceil(3 sigma)`, edges replicated, as `avfuse_media::augment::gaussian_blur`).
//! - `jpeg`: JPEG quality, an integer in `[1, 100]` (lower is stronger): every cached frame
//!   is encoded as a baseline 4:2:0 JPEG at that quality and decoded again
//!   (`avfuse_media::augment::jpeg_compress`), the artefact of re-uploaded social-media
//!   video.
//! - `audio_snr`: signal-to-noise ratio in dB of added white noise, added in the mel power
//!   domain of the cached log-mel (dB) so that it works on every cache, including those
//!   written before waveforms were stored: white noise has the
//!   same expected power in every Slaney-normalised mel band, so a clip with mean mel power
//!   `S` gets `P' = P + S * 10^(-SNR/10)` in every bin (the expectation of the noise's
//!   periodogram; its frame-to-frame fluctuation is not modelled), then back to dB.

use avfuse_media::augment;
use avfuse_media::image_ops::{chw_to_hwc, hwc_to_chw};
use avfuse_models::Modality;
use serde::{Deserialize, Serialize};

use crate::data::{HostBatch, Normalizer};
use crate::error::{Result, TrainError};
use crate::trainer::derive_seed;

/// A kind of corruption; see the [module documentation](self) for units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptionKind {
    /// Gaussian pixel noise (video).
    Noise,
    /// Gaussian blur (video).
    Blur,
    /// JPEG re-compression at a quality (video).
    Jpeg,
    /// White noise at an SNR in dB (audio).
    AudioSnr,
}

impl CorruptionKind {
    /// Every kind, in report order.
    pub const ALL: [CorruptionKind; 4] = [
        CorruptionKind::Noise,
        CorruptionKind::Blur,
        CorruptionKind::Jpeg,
        CorruptionKind::AudioSnr,
    ];

    /// Name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            CorruptionKind::Noise => "noise",
            CorruptionKind::Blur => "blur",
            CorruptionKind::Jpeg => "jpeg",
            CorruptionKind::AudioSnr => "audio_snr",
        }
    }

    /// Parse a [`CorruptionKind::name`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The modality it corrupts.
    pub fn modality(self) -> Modality {
        match self {
            CorruptionKind::Noise | CorruptionKind::Blur | CorruptionKind::Jpeg => Modality::Video,
            CorruptionKind::AudioSnr => Modality::Audio,
        }
    }

    /// The level that means "no corruption", where plots draw the clean result: 0 for the
    /// noise std and the blur sigma, quality 100 for JPEG, none for an SNR.
    pub fn clean_level(self) -> Option<f64> {
        match self {
            CorruptionKind::Noise | CorruptionKind::Blur => Some(0.0),
            CorruptionKind::Jpeg => Some(100.0),
            CorruptionKind::AudioSnr => None,
        }
    }

    /// Unit of the level, for axis labels.
    pub fn unit(self) -> &'static str {
        match self {
            CorruptionKind::Noise => "pixel noise std ([0, 1] scale)",
            CorruptionKind::Blur => "blur sigma (px)",
            CorruptionKind::Jpeg => "JPEG quality",
            CorruptionKind::AudioSnr => "audio SNR (dB)",
        }
    }
}

/// One corruption at one level.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Corruption {
    /// What is done.
    pub kind: CorruptionKind,
    /// How strongly, in the kind's unit.
    pub level: f64,
}

impl Corruption {
    /// `kind@level`, e.g. `noise@0.1` (the `corruption` column of prediction files).
    pub fn label(&self) -> String {
        format!("{}@{}", self.kind.name(), self.level)
    }

    /// Check the level: finite; `>= 0` for `noise` and `blur`; an integer in `[1, 100]`
    /// for `jpeg`.
    ///
    /// # Errors
    /// [`TrainError::Config`] naming the corruption and the value.
    pub fn validate(&self) -> Result<()> {
        let l = self.level;
        let (ok, rule) = match self.kind {
            CorruptionKind::Noise | CorruptionKind::Blur => {
                (l.is_finite() && l >= 0.0, "finite and >= 0")
            }
            CorruptionKind::Jpeg => (
                (1.0..=100.0).contains(&l) && l.fract() == 0.0,
                "an integer in [1, 100]",
            ),
            CorruptionKind::AudioSnr => (l.is_finite(), "finite"),
        };
        if ok {
            Ok(())
        } else {
            Err(TrainError::Config(format!(
                "corruption {}: level {l} is invalid ({} must be {rule})",
                self.kind.name(),
                self.kind.unit(),
            )))
        }
    }

    /// Corrupt `batch` in place. `clips[k]` is the dataset index of row `k` (it seeds that
    /// row's noise with `seed`); `norm` is the normaliser the batch was built with. Rows whose
    /// corrupted modality is absent (presence 0) are left alone.
    ///
    /// # Errors
    /// [`TrainError::Config`] for an invalid level or when `clips` does not have one entry
    /// per row.
    pub fn apply(
        &self,
        batch: &mut HostBatch,
        clips: &[usize],
        norm: &Normalizer,
        seed: u64,
    ) -> Result<()> {
        self.validate()?;
        if clips.len() != batch.batch {
            return Err(TrainError::Config(format!(
                "corruption {}: {} clip indices for a batch of {}",
                self.label(),
                clips.len(),
                batch.batch
            )));
        }
        let m = self.kind.modality() as usize;
        let frame_len = batch.frames_per_clip * 3 * batch.image_size * batch.image_size;
        let mel_len = batch.n_mels * batch.mel_frames;
        for (k, &clip) in clips.iter().enumerate() {
            if batch.presence[k * 2 + m] == 0.0 {
                continue;
            }
            let mut rng = augment::rng(derive_seed(seed, clip as u64 + 1));
            match self.kind {
                CorruptionKind::Noise => {
                    let s = self.level as f32;
                    for v in &mut batch.frames[k * frame_len..(k + 1) * frame_len] {
                        *v = (*v + s * augment::normal(&mut rng) as f32).clamp(-0.5, 0.5);
                    }
                }
                CorruptionKind::Blur => {
                    let side = batch.image_size;
                    let clip_frames = &mut batch.frames[k * frame_len..(k + 1) * frame_len];
                    for plane in clip_frames.chunks_exact_mut(side * side) {
                        blur_plane(plane, side, side, self.level as f32);
                    }
                }
                CorruptionKind::Jpeg => {
                    let clip_frames = &mut batch.frames[k * frame_len..(k + 1) * frame_len];
                    jpeg_planar(
                        clip_frames,
                        batch.frames_per_clip,
                        batch.image_size,
                        self.level as u8,
                    )?;
                }
                CorruptionKind::AudioSnr => {
                    add_mel_noise(
                        &mut batch.mel[k * mel_len..(k + 1) * mel_len],
                        norm,
                        self.level,
                    );
                }
            }
        }
        Ok(())
    }
}

/// The default robustness grid: pixel noise 0.05 / 0.1 / 0.2, blur 1 / 2 / 3 px, JPEG
/// quality 75 / 40 / 15, audio SNR 20 / 10 / 0 dB.
pub fn default_corruptions() -> Vec<Corruption> {
    let grid = [
        (CorruptionKind::Noise, [0.05, 0.1, 0.2]),
        (CorruptionKind::Blur, [1.0, 2.0, 3.0]),
        (CorruptionKind::Jpeg, [75.0, 40.0, 15.0]),
        (CorruptionKind::AudioSnr, [20.0, 10.0, 0.0]),
    ];
    grid.into_iter()
        .flat_map(|(kind, levels)| {
            levels
                .into_iter()
                .map(move |level| Corruption { kind, level })
        })
        .collect()
}

/// Parse a corruption grid: `default`, `none`, or `kind:l1,l2,...` groups separated by `;`
/// (e.g. `noise:0.1,0.2;audio_snr:10,0`).
///
/// # Errors
/// [`TrainError::Config`] naming the group, kind or level at fault.
pub fn parse_corruptions(s: &str) -> Result<Vec<Corruption>> {
    let s = s.trim();
    match s {
        "default" => return Ok(default_corruptions()),
        "none" | "" => return Ok(Vec::new()),
        _ => {}
    }
    let mut out = Vec::new();
    for group in s.split(';').map(str::trim).filter(|g| !g.is_empty()) {
        let (kind, levels) = group.split_once(':').ok_or_else(|| {
            TrainError::Config(format!(
                "corruptions: {group:?} is not kind:level,level,... (kinds: noise, blur, jpeg, audio_snr)"
            ))
        })?;
        let kind = CorruptionKind::parse(kind.trim()).ok_or_else(|| {
            TrainError::Config(format!(
                "corruptions: unknown kind {:?} (expected noise, blur, jpeg or audio_snr)",
                kind.trim()
            ))
        })?;
        for l in levels.split(',').map(str::trim) {
            let level: f64 = l.parse().map_err(|_| {
                TrainError::Config(format!(
                    "corruptions: level {l:?} of {} is not a number",
                    kind.name()
                ))
            })?;
            let c = Corruption { kind, level };
            c.validate()?;
            out.push(c);
        }
    }
    Ok(out)
}

/// JPEG round trip of one clip's normalised planar frames `[t, 3, s, s]` (values
/// `u8 / 255 - 0.5`) in place: back to u8 (exact for uncorrupted cache data), interleaved,
/// [`augment::jpeg_compress`] at `quality`, and back.
fn jpeg_planar(frames: &mut [f32], t: usize, s: usize, quality: u8) -> Result<()> {
    let chw: Vec<u8> = frames
        .iter()
        .map(|v| ((v + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    let mut hwc = chw_to_hwc(&chw, t, s, s, 3);
    augment::jpeg_compress(&mut hwc, t, s, s, quality)
        .map_err(|e| TrainError::Config(format!("corruption jpeg@{quality}: {e}")))?;
    for (d, v) in frames.iter_mut().zip(hwc_to_chw(&hwc, t, s, s, 3)) {
        *d = f32::from(v) / 255.0 - 0.5;
    }
    Ok(())
}

/// Separable Gaussian blur of one `[h, w]` f32 plane in place (radius `ceil(3 sigma)`, edges
/// replicated), with [`augment::gaussian_kernel`]. `augment::gaussian_blur` does the same on
/// interleaved `u8` frames; here the batch is planar f32 and must not be requantised.
fn blur_plane(plane: &mut [f32], h: usize, w: usize, sigma: f32) {
    if sigma <= 0.0 || h == 0 || w == 0 {
        return;
    }
    let k = augment::gaussian_kernel(sigma);
    let rad = (k.len() / 2) as i64;
    let mut tmp = vec![0f32; h * w];
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| {
                    let xx = (x as i64 + j as i64 - rad).clamp(0, w as i64 - 1) as usize;
                    kv * plane[y * w + xx]
                })
                .sum();
        }
    }
    for y in 0..h {
        for x in 0..w {
            plane[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| {
                    let yy = (y as i64 + j as i64 - rad).clamp(0, h as i64 - 1) as usize;
                    kv * tmp[yy * w + x]
                })
                .sum();
        }
    }
}

/// White noise at `snr_db` in the mel power domain of one clip's normalised log-mel.
fn add_mel_noise(mel: &mut [f32], norm: &Normalizer, snr_db: f64) {
    if mel.is_empty() {
        return;
    }
    let (mean, std) = (f64::from(norm.mel_mean), f64::from(norm.mel_std));
    let power: Vec<f64> = mel
        .iter()
        .map(|&v| 10f64.powf((f64::from(v) * std + mean) / 10.0))
        .collect();
    let signal = power.iter().sum::<f64>() / power.len() as f64;
    let noise = signal * 10f64.powf(-snr_db / 10.0);
    for (v, p) in mel.iter_mut().zip(power) {
        let db = 10.0 * (p + noise).max(1e-10).log10();
        *v = ((db - mean) / std) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(b: usize, t: usize, side: usize, n_mels: usize, f: usize) -> HostBatch {
        let frame_len = t * 3 * side * side;
        HostBatch {
            frames: (0..b * frame_len)
                .map(|i| ((i * 37 % 255) as f32) / 255.0 - 0.5)
                .collect(),
            mel: (0..b * n_mels * f)
                .map(|i| (i % 7) as f32 * 0.3 - 1.0)
                .collect(),
            presence: vec![1.0; b * 2],
            labels: vec![0.0; b],
            batch: b,
            frames_per_clip: t,
            image_size: side,
            n_mels,
            mel_frames: f,
        }
    }

    const NORM: Normalizer = Normalizer {
        mel_mean: -40.0,
        mel_std: 10.0,
    };

    #[test]
    fn parse_grid_and_errors() {
        assert_eq!(parse_corruptions("default").unwrap().len(), 12);
        assert!(parse_corruptions("none").unwrap().is_empty());
        let g = parse_corruptions("noise:0.1, 0.2; audio_snr:-5").unwrap();
        assert_eq!(
            g,
            vec![
                Corruption {
                    kind: CorruptionKind::Noise,
                    level: 0.1
                },
                Corruption {
                    kind: CorruptionKind::Noise,
                    level: 0.2
                },
                Corruption {
                    kind: CorruptionKind::AudioSnr,
                    level: -5.0
                },
            ]
        );
        for bad in [
            "noise",
            "fog:1",
            "blur:x",
            "blur:-1",
            "noise:nan",
            "jpeg:0",
            "jpeg:101",
            "jpeg:50.5",
        ] {
            let e = parse_corruptions(bad).unwrap_err().to_string();
            assert!(e.contains("corruption"), "{bad}: {e}");
        }
    }

    #[test]
    fn noise_is_seeded_per_clip_and_clamped() {
        let c = Corruption {
            kind: CorruptionKind::Noise,
            level: 0.2,
        };
        let clean = batch(2, 2, 4, 2, 3);
        let mut a = clean.clone();
        c.apply(&mut a, &[5, 9], &NORM, 1).unwrap();
        // The same clip in another batch position gets the same noise.
        let mut b = batch(1, 2, 4, 2, 3);
        let n = b.frames.len();
        b.frames = clean.frames[n..].to_vec();
        c.apply(&mut b, &[9], &NORM, 1).unwrap();
        assert_eq!(&a.frames[n..], &b.frames[..]);
        assert_ne!(a.frames, clean.frames);
        assert!(a.frames.iter().all(|v| (-0.5..=0.5).contains(v)));
        // Audio untouched; the noise std is about the level.
        assert_eq!(a.mel, clean.mel);
        let d: Vec<f32> = a
            .frames
            .iter()
            .zip(&clean.frames)
            .map(|(x, y)| x - y)
            .collect();
        let sd = (d.iter().map(|v| v * v).sum::<f32>() / d.len() as f32).sqrt();
        assert!((0.12..0.22).contains(&sd), "std {sd}");
    }

    #[test]
    fn absent_rows_are_left_alone() {
        let mut a = batch(2, 1, 4, 2, 3);
        a.presence = vec![0.0, 1.0, 1.0, 0.0];
        let clean = a.clone();
        for kind in CorruptionKind::ALL {
            Corruption { kind, level: 2.0 }
                .apply(&mut a, &[0, 1], &NORM, 3)
                .unwrap();
        }
        let fl = 3 * 16;
        assert_eq!(
            a.frames[..fl],
            clean.frames[..fl],
            "video of row 0 is absent"
        );
        assert_ne!(a.frames[fl..], clean.frames[fl..]);
        assert_ne!(a.mel[..6], clean.mel[..6]);
        assert_eq!(a.mel[6..], clean.mel[6..], "audio of row 1 is absent");
    }

    #[test]
    fn jpeg_is_the_media_round_trip_on_the_cached_bytes() {
        let (t, side) = (2, 16);
        let clean = batch(1, t, side, 2, 3);
        let mut a = clean.clone();
        Corruption {
            kind: CorruptionKind::Jpeg,
            level: 20.0,
        }
        .apply(&mut a, &[0], &NORM, 0)
        .unwrap();
        // The same through avfuse-media on the u8 interleaved frames.
        let plane = side * side;
        let mut hwc = vec![0u8; t * 3 * plane];
        for f in 0..t {
            for c in 0..3 {
                for p in 0..plane {
                    let v = clean.frames[(f * 3 + c) * plane + p];
                    hwc[(f * plane + p) * 3 + c] = ((v + 0.5) * 255.0).round() as u8;
                }
            }
        }
        augment::jpeg_compress(&mut hwc, t, side, side, 20).unwrap();
        for f in 0..t {
            for c in 0..3 {
                for p in 0..plane {
                    let want = f32::from(hwc[(f * plane + p) * 3 + c]) / 255.0 - 0.5;
                    assert_eq!(a.frames[(f * 3 + c) * plane + p], want);
                }
            }
        }
        assert_ne!(a.frames, clean.frames);
        assert_eq!(a.mel, clean.mel);
        // Stronger compression, larger error.
        let err = |q: f64| {
            let mut b = clean.clone();
            Corruption {
                kind: CorruptionKind::Jpeg,
                level: q,
            }
            .apply(&mut b, &[0], &NORM, 0)
            .unwrap();
            b.frames
                .iter()
                .zip(&clean.frames)
                .map(|(x, y)| (x - y).abs())
                .sum::<f32>()
        };
        assert!(err(95.0) < err(10.0), "{} vs {}", err(95.0), err(10.0));
    }

    #[test]
    fn blur_keeps_constants_and_the_mean_and_smooths() {
        let mut plane = vec![0.25f32; 36];
        blur_plane(&mut plane, 6, 6, 1.5);
        assert!(plane.iter().all(|v| (v - 0.25).abs() < 1e-6));
        // An impulse spreads symmetrically.
        let mut p = vec![0f32; 81];
        p[40] = 1.0;
        blur_plane(&mut p, 9, 9, 1.0);
        assert!(p[40] < 0.2 && p[40] > p[41] && (p[39] - p[41]).abs() < 1e-7);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn audio_snr_adds_the_expected_power() {
        // Constant -40 dB mel (normalised 0): signal power 1e-4 per bin; at 0 dB SNR the
        // noise adds the same power, +3.01 dB.
        let mut b = batch(1, 1, 2, 2, 4);
        b.mel = vec![0.0; 8];
        Corruption {
            kind: CorruptionKind::AudioSnr,
            level: 0.0,
        }
        .apply(&mut b, &[0], &NORM, 0)
        .unwrap();
        let want = (10.0 * 2f64.log10() / 10.0) as f32;
        assert!(b.mel.iter().all(|v| (v - want).abs() < 1e-5), "{:?}", b.mel);
        // High SNR changes almost nothing; low SNR floods the quiet bins.
        let mut b = batch(1, 1, 2, 2, 4);
        let clean = b.mel.clone();
        Corruption {
            kind: CorruptionKind::AudioSnr,
            level: 60.0,
        }
        .apply(&mut b, &[0], &NORM, 0)
        .unwrap();
        assert!(b.mel.iter().zip(&clean).all(|(a, c)| (a - c).abs() < 1e-3));
    }
}
