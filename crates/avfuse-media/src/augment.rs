//! Seeded data augmentation for video frames, audio and log-mel spectrograms.
//!
//! Every random operation takes an explicit RNG ([`rng`] makes a ChaCha8 one from a seed),
//! so a clip's augmentation is a pure function of its seed. Video operations take the
//! frames of one clip, u8 `[t, h, w, 3]` RGB row-major, and apply the *same* parameters to
//! every frame (a flip or a crop that changed from frame to frame would be an artefact a
//! model could learn). Audio is mono `f32` samples; mel is `[n_mels, frames]` dB.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::MediaError;
use crate::image_ops::{RectF, chw_to_hwc, hwc_to_chw, resize_region};

/// The RNG of this module: ChaCha8 seeded with `seed`.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn uniform(r: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (r.random::<u64>() >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box-Muller) from `r`.
pub fn normal(r: &mut ChaCha8Rng) -> f64 {
    let u1 = uniform(r, f64::MIN_POSITIVE, 1.0);
    let u2 = uniform(r, 0.0, 1.0);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn check_frames(frames: &[u8], t: usize, w: usize, h: usize) -> Result<(), MediaError> {
    if frames.len() != t * h * w * 3 || t == 0 || w == 0 || h == 0 {
        return Err(MediaError::Invalid(format!(
            "augment: buffer of {} bytes is not {t} x {h} x {w} x 3 (all > 0)",
            frames.len()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------- video

/// Mirrors every frame left-right, in place.
pub fn flip_horizontal(frames: &mut [u8], t: usize, w: usize, h: usize) -> Result<(), MediaError> {
    check_frames(frames, t, w, h)?;
    for row in frames.chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
    Ok(())
}

/// Random resized crop (torchvision's `RandomResizedCrop`): a region of area fraction in
/// `scale` and aspect ratio (w/h) log-uniform in `ratio`, resized to `out x out`; the same
/// region for every frame. Falls back to the central largest square after 10 tries.
/// Returns `[t, out, out, 3]`.
#[allow(clippy::too_many_arguments)]
pub fn random_resized_crop(
    frames: &[u8],
    t: usize,
    w: usize,
    h: usize,
    out: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    r: &mut ChaCha8Rng,
) -> Result<Vec<u8>, MediaError> {
    check_frames(frames, t, w, h)?;
    let valid = 0.0 < scale.0
        && scale.0 <= scale.1
        && scale.1 <= 1.0
        && 0.0 < ratio.0
        && ratio.0 <= ratio.1;
    if !valid || out == 0 {
        return Err(MediaError::Invalid(format!(
            "random_resized_crop: need 0 < scale.0 <= scale.1 <= 1, 0 < ratio.0 <= ratio.1, \
             out > 0; got scale {scale:?}, ratio {ratio:?}, out {out}"
        )));
    }
    let area = (w * h) as f64;
    let mut roi = None;
    for _ in 0..10 {
        let a = area * uniform(r, f64::from(scale.0), f64::from(scale.1));
        let lr = uniform(r, f64::from(ratio.0).ln(), f64::from(ratio.1).ln()).exp();
        let cw = (a * lr).sqrt();
        let ch = (a / lr).sqrt();
        if cw <= w as f64 && ch <= h as f64 {
            let x = uniform(r, 0.0, w as f64 - cw);
            let y = uniform(r, 0.0, h as f64 - ch);
            roi = Some(RectF {
                x: x as f32,
                y: y as f32,
                w: cw as f32,
                h: ch as f32,
            });
            break;
        }
    }
    let roi = roi.unwrap_or_else(|| crate::faces::centre_square(w, h));
    let fsize = w * h * 3;
    let mut res = Vec::with_capacity(t * out * out * 3);
    for f in frames.chunks_exact(fsize) {
        res.extend(resize_region(f, w, h, 3, roi, out, out)?);
    }
    Ok(res)
}

/// Colour jitter (torchvision order: brightness, contrast, saturation), factors drawn
/// uniformly in `[1 - x, 1 + x]` once per clip. Brightness scales values, contrast blends
/// with the clip-mean grey level, saturation blends with each pixel's grey. In place.
pub fn color_jitter(
    frames: &mut [u8],
    brightness: f32,
    contrast: f32,
    saturation: f32,
    r: &mut ChaCha8Rng,
) -> Result<(), MediaError> {
    for (name, v) in [
        ("brightness", brightness),
        ("contrast", contrast),
        ("saturation", saturation),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(MediaError::Invalid(format!(
                "color_jitter: {name} must be in [0, 1], got {v}"
            )));
        }
    }
    let mut draw = |x: f32| uniform(r, f64::from(1.0 - x), f64::from(1.0 + x)) as f32;
    let (b, c, s) = (draw(brightness), draw(contrast), draw(saturation));
    let grey = |p: &[f32]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let n = (frames.len() / 3).max(1) as f32;
    let mean: f32 = frames
        .chunks_exact(3)
        .map(|p| grey(&[f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]) * b)
        .sum::<f32>()
        / n;
    for p in frames.chunks_exact_mut(3) {
        let mut v = [
            f32::from(p[0]) * b,
            f32::from(p[1]) * b,
            f32::from(p[2]) * b,
        ];
        for x in &mut v {
            *x = (*x * c + mean * (1.0 - c)).clamp(0.0, 255.0);
        }
        let g = grey(&v);
        for (o, x) in p.iter_mut().zip(v) {
            *o = (x * s + g * (1.0 - s)).round().clamp(0.0, 255.0) as u8;
        }
    }
    Ok(())
}

/// The normalised 1-d Gaussian kernel of standard deviation `sigma > 0` pixels, radius
/// `ceil(3 sigma)` (length `2 * radius + 1`, sums to 1).
pub fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let rad = (3.0 * sigma).ceil() as i64;
    let k: Vec<f32> = (-rad..=rad)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter().map(|v| v / sum).collect()
}

/// Gaussian blur with standard deviation `sigma` pixels (separable, kernel radius
/// `ceil(3 sigma)`, edges replicated), in place. `sigma <= 0` does nothing.
pub fn gaussian_blur(
    frames: &mut [u8],
    t: usize,
    w: usize,
    h: usize,
    sigma: f32,
) -> Result<(), MediaError> {
    check_frames(frames, t, w, h)?;
    if !sigma.is_finite() {
        return Err(MediaError::Invalid(format!(
            "gaussian_blur: sigma must be finite, got {sigma}"
        )));
    }
    if sigma <= 0.0 {
        return Ok(());
    }
    let k = gaussian_kernel(sigma);
    let rad = (k.len() / 2) as i64;
    let mut tmp = vec![0.0f32; w * h * 3];
    for f in frames.chunks_exact_mut(w * h * 3) {
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut a = 0.0;
                    for (j, kv) in k.iter().enumerate() {
                        let xx = (x as i64 + j as i64 - rad).clamp(0, w as i64 - 1) as usize;
                        a += kv * f32::from(f[(y * w + xx) * 3 + c]);
                    }
                    tmp[(y * w + x) * 3 + c] = a;
                }
            }
        }
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut a = 0.0;
                    for (j, kv) in k.iter().enumerate() {
                        let yy = (y as i64 + j as i64 - rad).clamp(0, h as i64 - 1) as usize;
                        a += kv * tmp[(yy * w + x) * 3 + c];
                    }
                    f[(y * w + x) * 3 + c] = a.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    Ok(())
}

/// Adds Gaussian noise of standard deviation `std` (in 0..255 pixel units) to every
/// value, clamped to 0..255, in place.
pub fn gaussian_noise(frames: &mut [u8], std: f32, r: &mut ChaCha8Rng) -> Result<(), MediaError> {
    if !(std.is_finite() && std >= 0.0) {
        return Err(MediaError::Invalid(format!(
            "gaussian_noise: std must be >= 0, got {std}"
        )));
    }
    for v in frames.iter_mut() {
        let x = f64::from(*v) + f64::from(std) * normal(r);
        *v = x.round().clamp(0.0, 255.0) as u8;
    }
    Ok(())
}

/// JPEG compression artefacts: encodes and decodes every frame at `quality` (1..=100)
/// with the `image` crate's baseline JPEG codec, in place.
pub fn jpeg_compress(
    frames: &mut [u8],
    t: usize,
    w: usize,
    h: usize,
    quality: u8,
) -> Result<(), MediaError> {
    use image::ImageDecoder;
    check_frames(frames, t, w, h)?;
    if !(1..=100).contains(&quality) {
        return Err(MediaError::Invalid(format!(
            "jpeg_compress: quality must be in 1..=100, got {quality}"
        )));
    }
    let (w32, h32) = (
        u32::try_from(w).map_err(|_| MediaError::Invalid("jpeg: frame too wide".into()))?,
        u32::try_from(h).map_err(|_| MediaError::Invalid("jpeg: frame too tall".into()))?,
    );
    let err = |e: image::ImageError| MediaError::Invalid(format!("jpeg_compress: {e}"));
    for f in frames.chunks_exact_mut(w * h * 3) {
        let mut buf = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
            .encode(f, w32, h32, image::ExtendedColorType::Rgb8)
            .map_err(err)?;
        let dec = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&buf)).map_err(err)?;
        if dec.total_bytes() != f.len() as u64 {
            return Err(MediaError::Invalid(
                "jpeg_compress: decoded size differs".into(),
            ));
        }
        dec.read_image(f).map_err(err)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- audio

fn power(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64
}

/// Adds white Gaussian noise at exactly `snr_db` dB below the signal's mean power (the
/// drawn noise is rescaled to the target power), in place. Silent input is left as is.
pub fn add_noise_snr(audio: &mut [f32], snr_db: f32, r: &mut ChaCha8Rng) -> Result<(), MediaError> {
    if !snr_db.is_finite() {
        return Err(MediaError::Invalid(format!(
            "add_noise_snr: snr_db must be finite, got {snr_db}"
        )));
    }
    let ps = power(audio);
    if ps <= 0.0 {
        return Ok(());
    }
    let noise: Vec<f64> = (0..audio.len()).map(|_| normal(r)).collect();
    let pn = noise.iter().map(|v| v * v).sum::<f64>() / noise.len() as f64;
    let target = ps / 10f64.powf(f64::from(snr_db) / 10.0);
    let g = (target / pn).sqrt();
    for (a, n) in audio.iter_mut().zip(noise) {
        *a = (f64::from(*a) + g * n) as f32;
    }
    Ok(())
}

/// Multiplies by `10^(db / 20)`, in place.
pub fn gain_db(audio: &mut [f32], db: f32) {
    let g = 10f32.powf(db / 20.0);
    audio.iter_mut().for_each(|v| *v *= g);
}

/// Shifts later by `shift` samples (earlier when negative), filling with zeros; the
/// length is kept.
pub fn time_shift(audio: &mut [f32], shift: i64) {
    let n = audio.len() as i64;
    if shift >= n || -shift >= n {
        audio.iter_mut().for_each(|v| *v = 0.0);
    } else if shift > 0 {
        audio.copy_within(0..(n - shift) as usize, shift as usize);
        audio[..shift as usize].iter_mut().for_each(|v| *v = 0.0);
    } else if shift < 0 {
        let s = (-shift) as usize;
        audio.copy_within(s.., 0);
        let len = audio.len();
        audio[len - s..].iter_mut().for_each(|v| *v = 0.0);
    }
}

/// Band-limited resampling by `ratio` (output length `round(len * ratio)`) with a
/// Hann-windowed sinc, 16 zero crossings per side, cut-off at the lower Nyquist rate.
pub fn resample_sinc(x: &[f32], ratio: f64) -> Result<Vec<f32>, MediaError> {
    if !(ratio.is_finite() && ratio > 0.0) {
        return Err(MediaError::Invalid(format!(
            "resample_sinc: ratio must be > 0, got {ratio}"
        )));
    }
    const ZC: f64 = 16.0;
    let cutoff = ratio.min(1.0);
    let half = ZC / cutoff;
    let n_out = (x.len() as f64 * ratio).round() as usize;
    let mut y = vec![0.0f32; n_out];
    for (n, out) in y.iter_mut().enumerate() {
        let c = n as f64 / ratio;
        let lo = (c - half).ceil().max(0.0) as usize;
        let hi = ((c + half).floor() as i64).min(x.len() as i64 - 1);
        let mut acc = 0.0f64;
        let mut k = lo as i64;
        while k <= hi {
            let d = c - k as f64;
            let arg = d * cutoff;
            let sinc = if arg.abs() < 1e-12 {
                1.0
            } else {
                (std::f64::consts::PI * arg).sin() / (std::f64::consts::PI * arg)
            };
            let win = 0.5 + 0.5 * (std::f64::consts::PI * d / half).cos();
            acc += f64::from(x[k as usize]) * cutoff * sinc * win;
            k += 1;
        }
        *out = acc as f32;
    }
    Ok(y)
}

/// Pitch shift by `semitones`, resampling-based: the signal is resampled by
/// `2^(-semitones / 12)` and played at the original rate, which shifts pitch and tempo
/// together (like a tape played faster or slower); the result is cut or zero-padded to
/// the input length.
pub fn pitch_shift(audio: &[f32], semitones: f32) -> Result<Vec<f32>, MediaError> {
    if !(semitones.is_finite() && semitones.abs() <= 24.0) {
        return Err(MediaError::Invalid(format!(
            "pitch_shift: semitones must be within +-24, got {semitones}"
        )));
    }
    let ratio = 2f64.powf(-f64::from(semitones) / 12.0);
    let mut y = resample_sinc(audio, ratio)?;
    y.resize(audio.len(), 0.0);
    Ok(y)
}

// ---------------------------------------------------------------- mel (SpecAugment)

/// Masks `count` random runs of up to `max_width` consecutive frames (columns) of the
/// `[n_mels, frames]` mel, filling them with the mel's mean value. In place.
pub fn time_mask(
    mel: &mut [f32],
    n_mels: usize,
    frames: usize,
    max_width: usize,
    count: usize,
    r: &mut ChaCha8Rng,
) -> Result<(), MediaError> {
    mask(mel, n_mels, frames, max_width, count, r, true)
}

/// Masks `count` random bands of up to `max_width` consecutive mel bins (rows), filling
/// them with the mel's mean value. In place.
pub fn freq_mask(
    mel: &mut [f32],
    n_mels: usize,
    frames: usize,
    max_width: usize,
    count: usize,
    r: &mut ChaCha8Rng,
) -> Result<(), MediaError> {
    mask(mel, n_mels, frames, max_width, count, r, false)
}

fn mask(
    mel: &mut [f32],
    n_mels: usize,
    frames: usize,
    max_width: usize,
    count: usize,
    r: &mut ChaCha8Rng,
    time: bool,
) -> Result<(), MediaError> {
    if mel.len() != n_mels * frames || mel.is_empty() {
        return Err(MediaError::Invalid(format!(
            "mask: {} values is not {n_mels} x {frames}",
            mel.len()
        )));
    }
    let mean = mel.iter().sum::<f32>() / mel.len() as f32;
    let axis = if time { frames } else { n_mels };
    for _ in 0..count {
        let width = (r.random::<u64>() % (max_width.min(axis) as u64 + 1)) as usize;
        if width == 0 {
            continue;
        }
        let start = (r.random::<u64>() % ((axis - width) as u64 + 1)) as usize;
        for i in start..start + width {
            if time {
                for m in 0..n_mels {
                    mel[m * frames + i] = mean;
                }
            } else {
                mel[i * frames..(i + 1) * frames].fill(mean);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- policy

/// A training-time augmentation policy: each operation fires with its probability, with
/// parameters drawn from its range; everything is derived from one seed per clip.
///
/// In YAML (`dataset.augment` of the training config) every field is optional and takes the
/// default below; an unknown field is an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Probability of a horizontal flip (default 0.5).
    pub flip_p: f32,
    /// Probability of a random resized crop (default 0.5), area fraction range (default
    /// 0.6..1) and aspect range (default 3/4..4/3).
    pub crop_p: f32,
    /// See `crop_p`.
    pub crop_scale: (f32, f32),
    /// See `crop_p`.
    pub crop_ratio: (f32, f32),
    /// Probability of colour jitter (default 0.5) with strength 0.2 on each component.
    pub jitter_p: f32,
    /// Probability of a blur (default 0.2), sigma uniform in `blur_sigma` (default 0.3..1.5 px).
    pub blur_p: f32,
    /// See `blur_p`.
    pub blur_sigma: (f32, f32),
    /// Probability of pixel noise (default 0.2), std uniform in 0..`noise_std` (default 8).
    pub noise_p: f32,
    /// See `noise_p`.
    pub noise_std: f32,
    /// Probability of JPEG compression (default 0.3), quality uniform in `jpeg_quality`
    /// (default 30..=95).
    pub jpeg_p: f32,
    /// See `jpeg_p`.
    pub jpeg_quality: (u8, u8),
    /// Probability of audio noise (default 0.3) at an SNR uniform in `snr_db` (default 10..30 dB).
    pub audio_noise_p: f32,
    /// See `audio_noise_p`.
    pub snr_db: (f32, f32),
    /// Gain uniform in +-`gain_db` dB (default 6), always applied.
    pub gain_db: f32,
    /// Probability of a pitch shift (default 0.2) of up to +-`pitch_semitones` (default 2).
    pub pitch_p: f32,
    /// See `pitch_p`.
    pub pitch_semitones: f32,
    /// Probability of a time shift of the audio (default 0: off) by up to +-`shift_ms`
    /// milliseconds (default 40, one frame at 25 fps), zero-filled. Off by default because
    /// shifting a real clip's audio against its video is exactly what an audio-video
    /// desynchronisation fake looks like: keep `shift_ms` below the sync offsets the
    /// detector must catch.
    pub shift_p: f32,
    /// See `shift_p`.
    pub shift_ms: f32,
    /// SpecAugment: time masks (count, max width in frames), default (2, 10).
    pub time_masks: (usize, usize),
    /// SpecAugment: frequency masks (count, max width in bins), default (2, 8).
    pub freq_masks: (usize, usize),
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            flip_p: 0.5,
            crop_p: 0.5,
            crop_scale: (0.6, 1.0),
            crop_ratio: (0.75, 4.0 / 3.0),
            jitter_p: 0.5,
            blur_p: 0.2,
            blur_sigma: (0.3, 1.5),
            noise_p: 0.2,
            noise_std: 8.0,
            jpeg_p: 0.3,
            jpeg_quality: (30, 95),
            audio_noise_p: 0.3,
            snr_db: (10.0, 30.0),
            gain_db: 6.0,
            pitch_p: 0.2,
            pitch_semitones: 2.0,
            shift_p: 0.0,
            shift_ms: 40.0,
            time_masks: (2, 10),
            freq_masks: (2, 8),
        }
    }
}

impl AugmentConfig {
    /// Augments a clip's square frames `[t, s, s, 3]` in place (a crop is resized back to
    /// `s`), drawing everything from `seed`.
    pub fn video(
        &self,
        frames: &mut [u8],
        t: usize,
        s: usize,
        seed: u64,
    ) -> Result<(), MediaError> {
        let mut r = rng(seed ^ 0x5649_4445_4f00_0000);
        let p = |r: &mut ChaCha8Rng, prob: f32| uniform(r, 0.0, 1.0) < f64::from(prob);
        if p(&mut r, self.flip_p) {
            flip_horizontal(frames, t, s, s)?;
        }
        if p(&mut r, self.crop_p) {
            let c =
                random_resized_crop(frames, t, s, s, s, self.crop_scale, self.crop_ratio, &mut r)?;
            frames.copy_from_slice(&c);
        }
        if p(&mut r, self.jitter_p) {
            color_jitter(frames, 0.2, 0.2, 0.2, &mut r)?;
        }
        if p(&mut r, self.blur_p) {
            let sigma = uniform(
                &mut r,
                f64::from(self.blur_sigma.0),
                f64::from(self.blur_sigma.1),
            );
            gaussian_blur(frames, t, s, s, sigma as f32)?;
        }
        if p(&mut r, self.noise_p) {
            let std = uniform(&mut r, 0.0, f64::from(self.noise_std));
            gaussian_noise(frames, std as f32, &mut r)?;
        }
        if p(&mut r, self.jpeg_p) {
            let (lo, hi) = self.jpeg_quality;
            let q = uniform(&mut r, f64::from(lo), f64::from(hi) + 1.0).floor() as u8;
            jpeg_compress(frames, t, s, s, q.clamp(1, 100))?;
        }
        Ok(())
    }

    /// [`AugmentConfig::video`] on frames stored planar, u8 `[t, 3, s, s]` (the layout of
    /// the pre-extracted cache): the same operations and draws, the result back in planar
    /// layout.
    pub fn video_planar(
        &self,
        frames: &mut [u8],
        t: usize,
        s: usize,
        seed: u64,
    ) -> Result<(), MediaError> {
        check_frames(frames, t, s, s)?;
        let mut hwc = chw_to_hwc(frames, t, s, s, 3);
        self.video(&mut hwc, t, s, seed)?;
        frames.copy_from_slice(&hwc_to_chw(&hwc, t, s, s, 3));
        Ok(())
    }

    /// The audio augmentations that act on a `[n_mels, frames]` dB log-mel, in place, from
    /// `seed`: the gain (uniform in +-`gain_db`), which on a power dB spectrogram is the
    /// constant offset `+g` dB (exact for `power_to_db` with `ref = 1` above its `amin`
    /// floor), then the SpecAugment masks of [`AugmentConfig::mel`]. Noise at an SNR and
    /// pitch shift need the waveform ([`AugmentConfig::audio`]); a cache of mels cannot
    /// take them.
    pub fn log_mel(
        &self,
        mel: &mut [f32],
        n_mels: usize,
        frames: usize,
        seed: u64,
    ) -> Result<(), MediaError> {
        let mut r = rng(seed ^ 0x4741_494e_0000_0000);
        let g = uniform(&mut r, -f64::from(self.gain_db), f64::from(self.gain_db)) as f32;
        for v in mel.iter_mut() {
            *v += g;
        }
        self.mel(mel, n_mels, frames, seed)
    }

    /// Whether the policy has waveform augmentations ([`AugmentConfig::audio`]: noise at an
    /// SNR, pitch shift, time shift), which need the audio samples rather than a log-mel.
    pub fn needs_waveform(&self) -> bool {
        self.audio_noise_p > 0.0 || self.pitch_p > 0.0 || self.shift_p > 0.0
    }

    /// Augments mono audio at `sample_rate` Hz in place (pitch, noise, gain, time shift),
    /// drawing everything from `seed`.
    pub fn audio(&self, audio: &mut [f32], sample_rate: u32, seed: u64) -> Result<(), MediaError> {
        let mut r = rng(seed ^ 0x4155_4449_4f00_0000);
        if uniform(&mut r, 0.0, 1.0) < f64::from(self.pitch_p) {
            let st = uniform(
                &mut r,
                -f64::from(self.pitch_semitones),
                f64::from(self.pitch_semitones),
            );
            let y = pitch_shift(audio, st as f32)?;
            audio.copy_from_slice(&y);
        }
        if uniform(&mut r, 0.0, 1.0) < f64::from(self.audio_noise_p) {
            let snr = uniform(&mut r, f64::from(self.snr_db.0), f64::from(self.snr_db.1));
            add_noise_snr(audio, snr as f32, &mut r)?;
        }
        let g = uniform(&mut r, -f64::from(self.gain_db), f64::from(self.gain_db));
        gain_db(audio, g as f32);
        // Drawn last, so the draws above are those of a policy without time shift.
        if uniform(&mut r, 0.0, 1.0) < f64::from(self.shift_p) {
            let max = f64::from(self.shift_ms) * 1e-3 * f64::from(sample_rate);
            time_shift(audio, uniform(&mut r, -max, max).round() as i64);
        }
        Ok(())
    }

    /// SpecAugment masks on a `[n_mels, frames]` mel, in place, from `seed`.
    pub fn mel(
        &self,
        mel: &mut [f32],
        n_mels: usize,
        frames: usize,
        seed: u64,
    ) -> Result<(), MediaError> {
        let mut r = rng(seed ^ 0x4d45_4c00_0000_0000);
        time_mask(
            mel,
            n_mels,
            frames,
            self.time_masks.1,
            self.time_masks.0,
            &mut r,
        )?;
        freq_mask(
            mel,
            n_mels,
            frames,
            self.freq_masks.1,
            self.freq_masks.0,
            &mut r,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(t: usize, w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut r = rng(seed);
        (0..t * w * h * 3)
            .map(|i| ((i % 97) as u8).wrapping_add((r.random::<u8>()) >> 3))
            .collect()
    }

    #[test]
    fn planar_video_is_the_interleaved_policy_in_planar_layout() {
        let (t, s) = (3, 12);
        let hwc = clip(t, s, s, 9);
        let to_planar = |x: &[u8]| hwc_to_chw(x, t, s, s, 3);
        // Every operation fires, so every code path of the conversion is exercised.
        let policy = AugmentConfig {
            flip_p: 1.0,
            crop_p: 1.0,
            jitter_p: 1.0,
            blur_p: 1.0,
            noise_p: 1.0,
            jpeg_p: 1.0,
            ..AugmentConfig::default()
        };
        let mut a = hwc.clone();
        policy.video(&mut a, t, s, 77).unwrap();
        let mut b = to_planar(&hwc);
        policy.video_planar(&mut b, t, s, 77).unwrap();
        assert_ne!(a, hwc);
        assert_eq!(b, to_planar(&a));
        assert!(policy.video_planar(&mut b[1..], t, s, 77).is_err());
    }

    #[test]
    fn log_mel_gain_is_a_seeded_constant_offset() {
        let (n_mels, frames) = (6, 20);
        let mel: Vec<f32> = (0..n_mels * frames)
            .map(|i| -40.0 + i as f32 * 0.1)
            .collect();
        let policy = AugmentConfig {
            gain_db: 6.0,
            time_masks: (0, 0),
            freq_masks: (0, 0),
            ..AugmentConfig::default()
        };
        let mut a = mel.clone();
        policy.log_mel(&mut a, n_mels, frames, 3).unwrap();
        let g = a[0] - mel[0];
        assert!(g.abs() <= 6.0 && g != 0.0, "gain {g}");
        for (x, y) in a.iter().zip(&mel) {
            assert!((x - y - g).abs() < 1e-4);
        }
        let mut b = mel.clone();
        policy.log_mel(&mut b, n_mels, frames, 3).unwrap();
        assert_eq!(a, b);
        let mut c = mel.clone();
        policy.log_mel(&mut c, n_mels, frames, 4).unwrap();
        assert_ne!(a, c);
        // With a time mask: every column is either the input shifted by the gain, or one
        // constant (the mean after the gain); over a few seeds some columns are masked.
        let masked = AugmentConfig {
            time_masks: (1, 5),
            freq_masks: (0, 0),
            ..policy
        };
        let mut masked_cols = 0;
        for seed in 0..8 {
            let mut d = mel.clone();
            masked.log_mel(&mut d, n_mels, frames, seed).unwrap();
            let mut e = mel.clone();
            policy.log_mel(&mut e, n_mels, frames, seed).unwrap(); // same gain draw
            let mean = e.iter().sum::<f32>() / e.len() as f32;
            for col in 0..frames {
                let same = (0..n_mels).all(|m| d[m * frames + col] == e[m * frames + col]);
                let filled = (0..n_mels).all(|m| (d[m * frames + col] - mean).abs() < 1e-4);
                assert!(same || filled, "seed {seed} column {col}");
                masked_cols += usize::from(!same);
            }
        }
        assert!(masked_cols > 0);
    }

    #[test]
    fn config_fields_default_and_unknown_fields_fail() {
        let c: AugmentConfig = serde_json::from_str(r#"{"flip_p": 0.1}"#).unwrap();
        assert_eq!(c.flip_p, 0.1);
        assert_eq!(c.crop_p, AugmentConfig::default().crop_p);
        assert!(serde_json::from_str::<AugmentConfig>(r#"{"flip": 0.1}"#).is_err());
    }

    #[test]
    fn flip_twice_is_identity_and_flip_mirrors() {
        let (t, w, h) = (2, 5, 3);
        let orig = clip(t, w, h, 1);
        let mut f = orig.clone();
        flip_horizontal(&mut f, t, w, h).unwrap();
        assert_ne!(f, orig);
        assert_eq!(&f[0..3], &orig[(w - 1) * 3..w * 3]);
        flip_horizontal(&mut f, t, w, h).unwrap();
        assert_eq!(f, orig);
    }

    #[test]
    fn crop_is_seeded_and_sized() {
        let (t, w, h) = (2, 40, 30);
        let f = clip(t, w, h, 2);
        let a =
            random_resized_crop(&f, t, w, h, 16, (0.3, 1.0), (0.75, 1.33), &mut rng(5)).unwrap();
        let b =
            random_resized_crop(&f, t, w, h, 16, (0.3, 1.0), (0.75, 1.33), &mut rng(5)).unwrap();
        let c =
            random_resized_crop(&f, t, w, h, 16, (0.3, 1.0), (0.75, 1.33), &mut rng(6)).unwrap();
        assert_eq!(a.len(), t * 16 * 16 * 3);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(random_resized_crop(&f, t, w, h, 16, (0.0, 1.0), (1.0, 1.0), &mut rng(1)).is_err());
    }

    #[test]
    fn jitter_zero_is_identity_and_seeded() {
        let f0 = clip(1, 8, 8, 3);
        let mut f = f0.clone();
        color_jitter(&mut f, 0.0, 0.0, 0.0, &mut rng(1)).unwrap();
        assert_eq!(f, f0);
        let (mut a, mut b) = (f0.clone(), f0.clone());
        color_jitter(&mut a, 0.4, 0.4, 0.4, &mut rng(9)).unwrap();
        color_jitter(&mut b, 0.4, 0.4, 0.4, &mut rng(9)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, f0);
    }

    #[test]
    fn blur_keeps_constants_and_smooths_edges() {
        let mut c = vec![77u8; 10 * 10 * 3];
        gaussian_blur(&mut c, 1, 10, 10, 1.2).unwrap();
        assert!(c.iter().all(|&v| v == 77));
        let mut e = vec![0u8; 10 * 10 * 3];
        for y in 0..10 {
            for x in 5..10 {
                e[(y * 10 + x) * 3..(y * 10 + x) * 3 + 3].fill(200);
            }
        }
        gaussian_blur(&mut e, 1, 10, 10, 1.0).unwrap();
        let v4 = e[(5 * 10 + 4) * 3];
        assert!(v4 > 0 && v4 < 100, "{v4}");
    }

    #[test]
    fn pixel_noise_has_the_asked_std() {
        let mut f = vec![128u8; 64 * 64 * 3];
        gaussian_noise(&mut f, 10.0, &mut rng(4)).unwrap();
        let n = f.len() as f64;
        let mean = f.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let sd = (f
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!(
            (mean - 128.0).abs() < 0.3 && (sd - 10.0).abs() < 0.3,
            "{mean} {sd}"
        );
    }

    #[test]
    fn jpeg_degrades_with_quality() {
        let (w, h) = (32, 32);
        let f0: Vec<u8> = (0..w * h * 3).map(|i| ((i * 37) % 251) as u8).collect();
        let err = |q| {
            let mut f = f0.clone();
            jpeg_compress(&mut f, 1, w, h, q).unwrap();
            f.iter()
                .zip(&f0)
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
                .sum::<f64>()
        };
        assert!(err(95) < err(10));
        assert!(jpeg_compress(&mut f0.clone(), 1, w, h, 0).is_err());
    }

    #[test]
    fn noise_snr_is_exact() {
        let x: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
        for snr in [0.0f32, 10.0, 25.0] {
            let mut y = x.clone();
            add_noise_snr(&mut y, snr, &mut rng(7)).unwrap();
            let noise: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
            let got = 10.0 * (power(&x) / power(&noise)).log10();
            assert!((got - f64::from(snr)).abs() < 0.1, "{snr}: {got}");
        }
        let (mut a, mut b) = (x.clone(), x.clone());
        add_noise_snr(&mut a, 10.0, &mut rng(1)).unwrap();
        add_noise_snr(&mut b, 10.0, &mut rng(1)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn gain_and_shift() {
        let mut a = vec![0.5f32, -0.25];
        gain_db(&mut a, 20.0 * 2f32.log10());
        assert!((a[0] - 1.0).abs() < 1e-6 && (a[1] + 0.5).abs() < 1e-6);
        let mut s = vec![1.0f32, 2.0, 3.0, 4.0];
        time_shift(&mut s, 1);
        assert_eq!(s, [0.0, 1.0, 2.0, 3.0]);
        time_shift(&mut s, -2);
        assert_eq!(s, [2.0, 3.0, 0.0, 0.0]);
        time_shift(&mut s, 9);
        assert_eq!(s, [0.0; 4]);
    }

    fn zero_crossings(x: &[f32]) -> usize {
        x.windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count()
    }

    #[test]
    fn pitch_shift_an_octave_doubles_frequency() {
        let rate = 16000.0;
        let x: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate).sin())
            .collect();
        let y = pitch_shift(&x, 12.0).unwrap();
        assert_eq!(y.len(), x.len());
        // First half (before the zero padding): 880 Hz.
        let zc = zero_crossings(&y[100..7900]) as f32 / (7800.0 / rate) / 2.0;
        assert!((zc - 880.0).abs() < 5.0, "{zc}");
        let y = pitch_shift(&x, 0.0).unwrap();
        let d: f32 = y[200..15800]
            .iter()
            .zip(&x[200..15800])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-3, "{d}");
    }

    #[test]
    fn masks() {
        let (m, f) = (20, 30);
        let mel: Vec<f32> = (0..m * f).map(|i| i as f32).collect();
        let mean = mel.iter().sum::<f32>() / mel.len() as f32;
        let mut a = mel.clone();
        time_mask(&mut a, m, f, 5, 3, &mut rng(2)).unwrap();
        // Masked columns are whole columns at the mean.
        for c in 0..f {
            let col: Vec<f32> = (0..m).map(|r| a[r * f + c]).collect();
            let masked = col.iter().all(|&v| v == mean);
            assert!(masked || (0..m).all(|r| a[r * f + c] == mel[r * f + c]));
        }
        let mut b = mel.clone();
        freq_mask(&mut b, m, f, 4, 2, &mut rng(2)).unwrap();
        let rows = (0..m)
            .filter(|&r| b[r * f..(r + 1) * f].iter().all(|&v| v == mean))
            .count();
        assert!(rows <= 8);
        let mut c = mel.clone();
        time_mask(&mut c, m, f, 5, 3, &mut rng(2)).unwrap();
        assert_eq!(a, c);
    }

    #[test]
    fn policy_is_seeded() {
        let cfg = AugmentConfig {
            flip_p: 1.0,
            crop_p: 1.0,
            jitter_p: 1.0,
            blur_p: 1.0,
            noise_p: 1.0,
            jpeg_p: 1.0,
            ..AugmentConfig::default()
        };
        let f = clip(2, 24, 24, 9);
        let (mut a, mut b, mut c) = (f.clone(), f.clone(), f.clone());
        cfg.video(&mut a, 2, 24, 1).unwrap();
        cfg.video(&mut b, 2, 24, 1).unwrap();
        cfg.video(&mut c, 2, 24, 2).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let x: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.03).sin()).collect();
        let (mut a, mut b) = (x.clone(), x.clone());
        cfg.audio(&mut a, 16_000, 3).unwrap();
        cfg.audio(&mut b, 16_000, 3).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, x);
        // Time shift: drawn after everything else, so with no gain and nothing else the
        // output is the input moved by a whole number of samples, zero-filled.
        let shift = AugmentConfig {
            audio_noise_p: 0.0,
            pitch_p: 0.0,
            gain_db: 0.0,
            shift_p: 1.0,
            shift_ms: 50.0,
            ..AugmentConfig::default()
        };
        assert!(shift.needs_waveform());
        let mut s = x.clone();
        shift.audio(&mut s, 16_000, 5).unwrap();
        let k = (-800i64..=800)
            .find(|&k| {
                let mut y = x.clone();
                time_shift(&mut y, k);
                y == s
            })
            .expect("a pure shift of at most 50 ms");
        assert_ne!(k, 0, "seed 5 draws a non-zero shift");
    }
}
