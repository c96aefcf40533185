//! Log-mel spectrograms, bit-for-bit in spirit (and within 1e-3 dB in fact) equal to
//! librosa 0.10+:
//!
//! ```python
//! S = librosa.feature.melspectrogram(
//!     y=y, sr=sr, n_fft=n_fft, hop_length=hop, win_length=win, window="hann",
//!     center=True, pad_mode="constant", power=2.0, n_mels=n_mels, fmin=fmin, fmax=fmax,
//!     htk=False, norm="slaney")
//! librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=top_db)
//! ```
//!
//! Everything is computed in `f64` and returned as `f32`.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

use crate::error::MediaError;

/// `amin` of `librosa.power_to_db`: powers below it are clamped before the logarithm,
/// so the floor of the output is -100 dB.
pub const AMIN: f64 = 1e-10;

/// Log-mel settings (librosa names and meanings).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MelConfig {
    /// Sample rate of the input audio in Hz (default 16000).
    pub sample_rate: u32,
    /// FFT size in samples (default 512). Must be even.
    pub n_fft: usize,
    /// Hann window length in samples, `<= n_fft`; the window is zero-padded, centred, to
    /// `n_fft` (default 400 = 25 ms at 16 kHz).
    pub win_length: usize,
    /// Hop between frames in samples (default 160 = 10 ms at 16 kHz).
    pub hop_length: usize,
    /// Number of mel bands (default 64).
    pub n_mels: usize,
    /// Lowest band edge in Hz (default 0).
    pub fmin: f32,
    /// Highest band edge in Hz, `<= sample_rate / 2` (default 8000).
    pub fmax: f32,
    /// Dynamic range of the output in dB below its maximum (default `Some(80)`);
    /// `None` keeps everything down to the -100 dB floor.
    pub top_db: Option<f32>,
}

impl Default for MelConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 512,
            win_length: 400,
            hop_length: 160,
            n_mels: 64,
            fmin: 0.0,
            fmax: 8000.0,
            top_db: Some(80.0),
        }
    }
}

impl MelConfig {
    /// Checks every field; the error names the field at fault and its value.
    pub fn validate(&self) -> Result<(), MediaError> {
        let bad = |msg: String| Err(MediaError::Invalid(format!("mel config: {msg}")));
        if self.sample_rate == 0 {
            return bad("sample_rate must be > 0, got 0".into());
        }
        if self.n_fft < 2 || !self.n_fft.is_multiple_of(2) {
            return bad(format!("n_fft must be even and >= 2, got {}", self.n_fft));
        }
        if self.win_length == 0 || self.win_length > self.n_fft {
            return bad(format!(
                "win_length must be in 1..=n_fft ({}), got {}",
                self.n_fft, self.win_length
            ));
        }
        if self.hop_length == 0 {
            return bad("hop_length must be > 0, got 0".into());
        }
        if self.n_mels == 0 {
            return bad("n_mels must be > 0, got 0".into());
        }
        let nyquist = self.sample_rate as f32 / 2.0;
        if !self.fmin.is_finite() || self.fmin < 0.0 {
            return bad(format!(
                "fmin must be finite and >= 0 Hz, got {}",
                self.fmin
            ));
        }
        if !self.fmax.is_finite() || self.fmax <= self.fmin || self.fmax > nyquist {
            return bad(format!(
                "fmax must be in (fmin = {}, sample_rate / 2 = {nyquist}] Hz, got {}",
                self.fmin, self.fmax
            ));
        }
        if let Some(t) = self.top_db
            && (!t.is_finite() || t < 0.0)
        {
            return bad(format!("top_db must be finite and >= 0 dB, got {t}"));
        }
        Ok(())
    }

    /// Number of STFT frames for `n_samples` input samples: `1 + n_samples / hop_length`
    /// (centred frames, `n_fft / 2` zeros of padding on both sides).
    pub fn n_frames(&self, n_samples: usize) -> usize {
        1 + n_samples / self.hop_length.max(1)
    }

    /// Number of frequency bins of one STFT frame: `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }
}

/// Hz to mel on the Slaney scale (librosa `hz_to_mel(htk=False)`): linear below 1 kHz
/// (200/3 Hz per mel), logarithmic above.
pub fn hz_to_mel_slaney(hz: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / logstep
    } else {
        hz / F_SP
    }
}

/// Inverse of [`hz_to_mel_slaney`] (librosa `mel_to_hz(htk=False)`).
pub fn mel_to_hz_slaney(mel: f64) -> f64 {
    const F_SP: f64 = 200.0 / 3.0;
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (logstep * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

/// Slaney-normalised triangular mel filterbank (librosa `filters.mel(htk=False,
/// norm="slaney")`), dense and row-major `[n_mels, n_fft / 2 + 1]`.
pub fn mel_filterbank(cfg: &MelConfig) -> Vec<f64> {
    let n_bins = cfg.n_bins();
    let sr = f64::from(cfg.sample_rate);
    let fftfreqs: Vec<f64> = (0..n_bins)
        .map(|k| k as f64 * sr / cfg.n_fft as f64)
        .collect();
    let min_mel = hz_to_mel_slaney(f64::from(cfg.fmin));
    let max_mel = hz_to_mel_slaney(f64::from(cfg.fmax));
    let n_pts = cfg.n_mels + 2;
    let step = (max_mel - min_mel) / (n_pts - 1) as f64;
    let mel_f: Vec<f64> = (0..n_pts)
        .map(|i| {
            let m = if i + 1 == n_pts {
                max_mel
            } else {
                min_mel + i as f64 * step
            };
            mel_to_hz_slaney(m)
        })
        .collect();
    let mut w = vec![0.0f64; cfg.n_mels * n_bins];
    for i in 0..cfg.n_mels {
        let (lo, mid, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
        let enorm = 2.0 / (hi - lo);
        for (k, &f) in fftfreqs.iter().enumerate() {
            let lower = (f - lo) / (mid - lo);
            let upper = (hi - f) / (hi - mid);
            let v = lower.min(upper).max(0.0);
            w[i * n_bins + k] = v * enorm;
        }
    }
    w
}

/// Periodic Hann window of `win_length` (scipy `get_window("hann", win_length,
/// fftbins=True)`), zero-padded centred to `n_fft` like librosa's `pad_center`.
pub fn hann_window_padded(n_fft: usize, win_length: usize) -> Vec<f64> {
    let mut w = vec![0.0; n_fft];
    let lpad = (n_fft - win_length) / 2;
    for n in 0..win_length {
        let x = 2.0 * std::f64::consts::PI * n as f64 / win_length as f64;
        w[lpad + n] = 0.5 - 0.5 * x.cos();
    }
    w
}

/// One mel band: its non-zero weights, starting at FFT bin `start`.
#[derive(Clone, Debug)]
struct Band {
    start: usize,
    weights: Vec<f64>,
}

/// A log-mel extractor for one [`MelConfig`]: the window, the FFT plan and the mel
/// filterbank are built once in [`LogMel::new`]; [`LogMel::compute`] is then cheap and
/// `&self`, so one extractor can be shared by many threads.
pub struct LogMel {
    cfg: MelConfig,
    window: Vec<f64>,
    fft: Arc<dyn Fft<f64>>,
    bands: Vec<Band>,
    /// First and one-past-last non-zero index of the padded window.
    win_span: (usize, usize),
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel").field("cfg", &self.cfg).finish()
    }
}

impl LogMel {
    /// Validates `cfg` and precomputes the window, FFT plan and filterbank.
    pub fn new(cfg: &MelConfig) -> Result<Self, MediaError> {
        cfg.validate()?;
        let window = hann_window_padded(cfg.n_fft, cfg.win_length);
        let lpad = (cfg.n_fft - cfg.win_length) / 2;
        let fft = FftPlanner::<f64>::new().plan_fft_forward(cfg.n_fft);
        let n_bins = cfg.n_bins();
        let dense = mel_filterbank(cfg);
        let bands = (0..cfg.n_mels)
            .map(|m| {
                let row = &dense[m * n_bins..(m + 1) * n_bins];
                match row.iter().position(|&v| v != 0.0) {
                    None => Band {
                        start: 0,
                        weights: Vec::new(),
                    },
                    Some(start) => {
                        let end = n_bins - row.iter().rev().position(|&v| v != 0.0).unwrap_or(0);
                        Band {
                            start,
                            weights: row[start..end].to_vec(),
                        }
                    }
                }
            })
            .collect::<Vec<_>>();
        let empty = bands.iter().filter(|b| b.weights.is_empty()).count();
        if empty > 0 {
            tracing::warn!(
                empty,
                n_mels = cfg.n_mels,
                n_fft = cfg.n_fft,
                "some mel bands have no FFT bin (too many mels for n_fft); they stay at the floor"
            );
        }
        Ok(Self {
            cfg: cfg.clone(),
            window,
            fft,
            bands,
            win_span: (lpad, lpad + cfg.win_length),
        })
    }

    /// The configuration this extractor was built for.
    pub fn config(&self) -> &MelConfig {
        &self.cfg
    }

    /// The analysis window, length `n_fft`.
    pub fn window(&self) -> &[f64] {
        &self.window
    }

    /// Number of output frames (columns) for `n_samples` input samples:
    /// `1 + n_samples / hop_length`.
    pub fn n_frames(&self, n_samples: usize) -> usize {
        self.cfg.n_frames(n_samples)
    }

    /// Mel power spectrogram (before dB), row-major `[n_mels, n_frames]`, in `f64`.
    pub fn power(&self, audio: &[f32]) -> Vec<f64> {
        let n_fft = self.cfg.n_fft;
        let hop = self.cfg.hop_length;
        let pad = n_fft / 2;
        let n_frames = self.n_frames(audio.len());
        let n_bins = self.cfg.n_bins();
        let n_mels = self.cfg.n_mels;
        let mut out = vec![0.0f64; n_mels * n_frames];
        let mut buf = vec![Complex::new(0.0f64, 0.0); n_fft];
        let mut scratch = vec![Complex::new(0.0f64, 0.0); self.fft.get_inplace_scratch_len()];
        let mut pow_a = vec![0.0f64; n_bins];
        let mut pow_b = vec![0.0f64; n_bins];
        let (w0, w1) = self.win_span;
        // Sample of the padded signal: zero outside the input.
        let sample = |i: isize| -> f64 {
            if i >= 0 && (i as usize) < audio.len() {
                f64::from(audio[i as usize])
            } else {
                0.0
            }
        };
        // Two real frames per complex FFT: frame a in the real part, frame b in the
        // imaginary part, separated afterwards by conjugate symmetry.
        let mut f = 0;
        while f < n_frames {
            let has_b = f + 1 < n_frames;
            let start_a = (f * hop) as isize - pad as isize;
            let start_b = start_a + hop as isize;
            buf.iter_mut().for_each(|c| *c = Complex::new(0.0, 0.0));
            for (i, (b, &w)) in buf[w0..w1].iter_mut().zip(&self.window[w0..w1]).enumerate() {
                let i = (i + w0) as isize;
                let re = w * sample(start_a + i);
                let im = if has_b { w * sample(start_b + i) } else { 0.0 };
                *b = Complex::new(re, im);
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            for k in 0..n_bins {
                let z = buf[k];
                let zc = buf[(n_fft - k) % n_fft].conj();
                let xa = (z + zc) * 0.5;
                let xb = (z - zc) * Complex::new(0.0, -0.5);
                pow_a[k] = xa.norm_sqr();
                pow_b[k] = xb.norm_sqr();
            }
            for (m, band) in self.bands.iter().enumerate() {
                let pa = &pow_a[band.start..band.start + band.weights.len()];
                let pb = &pow_b[band.start..band.start + band.weights.len()];
                let (mut sa, mut sb) = (0.0, 0.0);
                for ((w, a), b) in band.weights.iter().zip(pa).zip(pb) {
                    sa += w * a;
                    sb += w * b;
                }
                out[m * n_frames + f] = sa;
                if has_b {
                    out[m * n_frames + f + 1] = sb;
                }
            }
            f += 2;
        }
        out
    }

    /// Log-mel spectrogram of mono `audio` (samples at `sample_rate`, nominally in
    /// [-1, 1]) in dB (`10 log10(max(power, 1e-10))`, then clipped to `top_db` below the
    /// maximum), row-major `[n_mels, n_frames]` with `n_frames = 1 + len / hop_length`.
    pub fn compute(&self, audio: &[f32]) -> Vec<f32> {
        let power = self.power(audio);
        let mut db: Vec<f64> = power.iter().map(|&p| 10.0 * p.max(AMIN).log10()).collect();
        if let Some(top_db) = self.cfg.top_db {
            let max = db.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let floor = max - f64::from(top_db);
            db.iter_mut().for_each(|v| *v = v.max(floor));
        }
        db.into_iter().map(|v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_shapes() {
        let lm = LogMel::new(&MelConfig::default()).unwrap();
        assert_eq!(lm.n_frames(10_240), 65);
        assert_eq!(lm.compute(&vec![0.0; 10_240]).len(), 64 * 65);
        assert_eq!(lm.n_frames(0), 1);
        // Silence is the -100 dB floor everywhere.
        assert!(lm.compute(&[]).iter().all(|&v| v == -100.0));
    }

    #[test]
    fn validate_names_field() {
        let cfg = MelConfig {
            win_length: 600,
            ..MelConfig::default()
        };
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("win_length")
        );
        let cfg = MelConfig {
            fmax: 9000.0,
            ..MelConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("fmax"));
        let cfg = MelConfig {
            n_fft: 511,
            win_length: 400,
            ..MelConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("n_fft"));
        let cfg = MelConfig {
            top_db: Some(-1.0),
            ..MelConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("top_db"));
        assert!(LogMel::new(&cfg).is_err());
    }

    #[test]
    fn slaney_scale_values() {
        // Linear part: 200/3 Hz per mel; 1 kHz is mel 15; log part: 6.4x per 27 mels.
        assert!((hz_to_mel_slaney(500.0) - 7.5).abs() < 1e-12);
        assert!((hz_to_mel_slaney(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel_slaney(6400.0) - 42.0).abs() < 1e-9);
        assert!((mel_to_hz_slaney(42.0) - 6400.0).abs() < 1e-6);
        // librosa.hz_to_mel(8000) = 45.245640471924965
        assert!((hz_to_mel_slaney(8000.0) - 45.245_640_471_924_965).abs() < 1e-9);
        for hz in [0.0, 10.0, 999.0, 1000.0, 1234.5, 7999.0] {
            assert!((mel_to_hz_slaney(hz_to_mel_slaney(hz)) - hz).abs() < 1e-9);
        }
    }

    #[test]
    fn filterbank_triangles_have_slaney_area() {
        // Each slaney triangle has peak 2 / (hi - lo), so its area in Hz is 1 (before
        // sampling at FFT bins): check a hand-computable band.
        let cfg = MelConfig::default();
        let fb = mel_filterbank(&cfg);
        let n_bins = cfg.n_bins();
        let max_mel = hz_to_mel_slaney(8000.0);
        let step = max_mel / 65.0;
        // Band 0: edges mel 0, step, 2*step (all below 1 kHz, so linear in Hz).
        let (lo, mid, hi) = (0.0, step * 200.0 / 3.0, 2.0 * step * 200.0 / 3.0);
        let enorm = 2.0 / (hi - lo);
        for (k, &have) in fb[..n_bins].iter().enumerate() {
            let f = k as f64 * 31.25;
            let want = ((f - lo) / (mid - lo)).min((hi - f) / (hi - mid)).max(0.0) * enorm;
            assert!((have - want).abs() < 1e-12, "bin {k}: {have} vs {want}");
        }
        // Every band is non-empty for the default config.
        for m in 0..cfg.n_mels {
            assert!(fb[m * n_bins..(m + 1) * n_bins].iter().any(|&v| v > 0.0));
        }
    }

    #[test]
    fn window_is_periodic_hann_centred() {
        let w = hann_window_padded(512, 400);
        assert_eq!(w[..56].iter().filter(|&&v| v != 0.0).count(), 0);
        assert_eq!(w[56], 0.0);
        assert!((w[56 + 200] - 1.0).abs() < 1e-15);
        assert!((w[57] - (0.5 - 0.5 * (2.0 * std::f64::consts::PI / 400.0).cos())).abs() < 1e-15);
        assert_eq!(w[456..].iter().filter(|&&v| v != 0.0).count(), 0);
    }

    #[test]
    fn paired_fft_matches_naive_dft() {
        // 800 samples -> 6 frames; 801 -> 6 too; 1000 -> 7 (odd: unpaired last frame).
        let cfg = MelConfig::default();
        let lm = LogMel::new(&cfg).unwrap();
        let fb = mel_filterbank(&cfg);
        let n_bins = cfg.n_bins();
        for len in [800usize, 1000] {
            let audio: Vec<f32> = (0..len)
                .map(|i| ((i as f32) * 0.37).sin() * 0.5 + ((i * i) % 7) as f32 * 0.01)
                .collect();
            let got = lm.power(&audio);
            let n = lm.n_frames(len);
            for f in 0..n {
                let start = f as isize * 160 - 256;
                let frame: Vec<f64> = (0..512)
                    .map(|i| {
                        let j = start + i as isize;
                        let x = if j >= 0 && (j as usize) < len {
                            f64::from(audio[j as usize])
                        } else {
                            0.0
                        };
                        x * lm.window()[i]
                    })
                    .collect();
                let power: Vec<f64> = (0..n_bins)
                    .map(|k| {
                        let (mut re, mut im) = (0.0, 0.0);
                        for (i, x) in frame.iter().enumerate() {
                            let a = -2.0 * std::f64::consts::PI * (k * i) as f64 / 512.0;
                            re += x * a.cos();
                            im += x * a.sin();
                        }
                        re * re + im * im
                    })
                    .collect();
                for m in 0..cfg.n_mels {
                    let want: f64 = (0..n_bins).map(|k| fb[m * n_bins + k] * power[k]).sum();
                    let have = got[m * n + f];
                    assert!(
                        (have - want).abs() <= 1e-9 * want.abs().max(1e-6),
                        "len {len} frame {f} mel {m}: {have} vs {want}"
                    );
                }
            }
        }
    }
}
