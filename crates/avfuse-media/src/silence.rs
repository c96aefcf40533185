//! The leading-silence shortcut check.
//!
//! Some deepfake datasets have a known artefact: fake clips start with more silence than
//! real ones, so a model can "detect" fakes from the first few hundred milliseconds of
//! audio. [`leading_silence`] measures it on one clip; [`silence_report`] (feature
//! `ffmpeg`) summarises it per label over a dataset, and `prepare` can trim it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::MediaError;

/// Analysis window of [`leading_silence`]: 25 ms.
pub const WINDOW_S: f64 = 0.025;
/// Hop of [`leading_silence`]: 10 ms.
pub const HOP_S: f64 = 0.010;

/// Seconds of silence at the start of `audio` (mono, `rate` Hz): the start time of the
/// first 25 ms window (10 ms hop) whose RMS level is within `threshold_db` dB of the
/// loudest window of the clip (the meaning of `top_db` in `librosa.effects.trim`; 40 is a
/// usual value). All-silent (or empty) audio returns its whole duration.
pub fn leading_silence(audio: &[f32], rate: u32, threshold_db: f32) -> Result<f64, MediaError> {
    if rate == 0 {
        return Err(MediaError::Invalid(
            "leading_silence: rate must be > 0".into(),
        ));
    }
    if !(threshold_db.is_finite() && threshold_db > 0.0) {
        return Err(MediaError::Invalid(format!(
            "leading_silence: threshold_db must be > 0 (dB below the loudest window), got \
             {threshold_db}"
        )));
    }
    let win = ((WINDOW_S * f64::from(rate)).round() as usize).max(1);
    let hop = ((HOP_S * f64::from(rate)).round() as usize).max(1);
    let duration = audio.len() as f64 / f64::from(rate);
    if audio.len() < win {
        return Ok(duration);
    }
    let energies: Vec<f64> = (0..=(audio.len() - win) / hop)
        .map(|k| {
            let w = &audio[k * hop..k * hop + win];
            w.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / win as f64
        })
        .collect();
    let max = energies.iter().copied().fold(0.0f64, f64::max);
    if max <= 1e-20 {
        return Ok(duration);
    }
    let floor = max * 10f64.powf(-f64::from(threshold_db) / 10.0);
    Ok(match energies.iter().position(|&e| e >= floor) {
        Some(k) => (k * hop) as f64 / f64::from(rate),
        None => duration,
    })
}

/// Leading-silence statistics of one label.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SilenceStats {
    /// Clips measured.
    pub clips: usize,
    /// Clips without an audio track (not measured).
    pub no_audio: usize,
    /// Mean leading silence, seconds.
    pub mean_s: f64,
    /// Median leading silence, seconds.
    pub median_s: f64,
    /// 90th percentile, seconds.
    pub p90_s: f64,
    /// Fraction of measured clips with more than 0.1 s of leading silence.
    pub frac_over_100ms: f64,
    /// Fraction of measured clips with more than 0.5 s of leading silence.
    pub frac_over_500ms: f64,
}

impl SilenceStats {
    /// Statistics of `values` (seconds) plus the count of clips without audio.
    pub fn from_values(values: &[f64], no_audio: usize) -> Self {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Self {
                no_audio,
                ..Self::default()
            };
        }
        let q = |p: f64| v[((p * (n - 1) as f64).round() as usize).min(n - 1)];
        let frac = |t: f64| v.iter().filter(|&&x| x > t).count() as f64 / n as f64;
        Self {
            clips: n,
            no_audio,
            mean_s: v.iter().sum::<f64>() / n as f64,
            median_s: q(0.5),
            p90_s: q(0.9),
            frac_over_100ms: frac(0.1),
            frac_over_500ms: frac(0.5),
        }
    }
}

/// Leading silence by label over a dataset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SilenceReport {
    /// The `threshold_db` used.
    pub threshold_db: f32,
    /// Per label (`"0"` real, `"1"` fake).
    pub by_label: BTreeMap<String, SilenceStats>,
    /// `mean_s(fake) - mean_s(real)`, seconds, when both are present: a large positive
    /// value means leading silence predicts the label (a shortcut to trim).
    pub mean_gap_s: Option<f64>,
    /// Files that could not be read, with the error.
    pub failed: Vec<(String, String)>,
}

/// Measures leading silence (16 kHz mono, see [`leading_silence`]) of every clip in
/// `clips`, in parallel, and summarises it by label. Unreadable files are listed in
/// `failed`, not fatal.
#[cfg(feature = "ffmpeg")]
pub fn silence_report(
    clips: &[crate::dataset::ClipSource],
    threshold_db: f32,
) -> Result<SilenceReport, MediaError> {
    use rayon::prelude::*;
    leading_silence(&[], 16_000, threshold_db)?;
    let results: Vec<(u8, Result<Option<f64>, MediaError>)> = clips
        .par_iter()
        .map(|c| {
            let r = crate::decode::read_audio_track(&c.video, 16_000).and_then(|a| match a {
                Some(a) => leading_silence(&a, 16_000, threshold_db).map(Some),
                None => Ok(None),
            });
            (c.label, r)
        })
        .collect();
    let mut values: BTreeMap<u8, (Vec<f64>, usize)> = BTreeMap::new();
    let mut failed = Vec::new();
    for ((label, r), c) in results.into_iter().zip(clips) {
        match r {
            Ok(Some(s)) => values.entry(label).or_default().0.push(s),
            Ok(None) => values.entry(label).or_default().1 += 1,
            Err(e) => {
                tracing::warn!(file = %c.video.display(), error = %e, "cannot measure silence");
                failed.push((c.video.display().to_string(), e.to_string()));
            }
        }
    }
    let by_label: BTreeMap<String, SilenceStats> = values
        .iter()
        .map(|(l, (v, na))| (l.to_string(), SilenceStats::from_values(v, *na)))
        .collect();
    let mean_gap_s = match (by_label.get("0"), by_label.get("1")) {
        (Some(r), Some(f)) if r.clips > 0 && f.clips > 0 => Some(f.mean_s - r.mean_s),
        _ => None,
    };
    Ok(SilenceReport {
        threshold_db,
        by_label,
        mean_gap_s,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_onset() {
        let rate = 16_000;
        let mut a = vec![0.0f32; rate as usize];
        for (i, v) in a.iter_mut().enumerate().skip(8000) {
            *v = (i as f32 * 0.1).sin() * 0.5;
        }
        // Low background noise stays "silent" at 40 dB below the speech.
        for (i, v) in a.iter_mut().enumerate().take(8000) {
            *v = if i % 2 == 0 { 1e-4 } else { -1e-4 };
        }
        let s = leading_silence(&a, rate, 40.0).unwrap();
        // The first window reaching the onset starts within one window before it.
        assert!(s > 0.5 - WINDOW_S - 1e-9 && s <= 0.5, "{s}");
        assert_eq!(leading_silence(&vec![0.0; 1600], rate, 40.0).unwrap(), 0.1);
        assert_eq!(leading_silence(&[], rate, 40.0).unwrap(), 0.0);
        assert!(leading_silence(&a, rate, -3.0).is_err());
    }

    #[test]
    fn stats() {
        let s = SilenceStats::from_values(&[0.0, 0.2, 0.6, 1.0], 1);
        assert_eq!(s.clips, 4);
        assert_eq!(s.no_audio, 1);
        assert!((s.mean_s - 0.45).abs() < 1e-12);
        assert_eq!(s.frac_over_100ms, 0.75);
        assert_eq!(s.frac_over_500ms, 0.5);
    }
}
