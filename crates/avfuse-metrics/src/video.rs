//! Sample level and video level, kept apart.
//!
//! A detector scores *samples* (a clip window, a group of frames); a video has one or more
//! samples. DeepfakeBench reports frame-level AUC and video-level AUC (the mean of the frame
//! probabilities per video) side by side, and mixing the two up is a known source of wrong
//! numbers. Here the two levels are distinct types: [`SamplePrediction`] and
//! [`VideoPrediction`], produced from each other only by [`aggregate_videos`], and reported
//! by [`level_reports`] as two separately named [`BinaryReport`]s.
//!
//! Aggregations ([`Aggregation`]) of the per-sample probabilities `p_1..p_n` of one video:
//! - `mean`: `sum(p_i) / n` (DeepfakeBench's video-level score);
//! - `max`: `max(p_i)` (one confidently fake window makes the video fake);
//! - `attention { temperature: T }`: a softmax-weighted mean,
//!   `sum_i w_i p_i` with `w_i = exp(p_i / T) / sum_j exp(p_j / T)`. Samples that look more
//!   fake weigh more. `T -> 0` tends to `max`, `T -> inf` to `mean`; with probabilities in
//!   `[0, 1]`, `T = 0.1` already weighs a sample at 0.9 e^4 ~ 55 times one at 0.5. Computed
//!   as `exp((p_i - max_j p_j) / T)` so it never overflows. It needs no learned parameters,
//!   so it can be applied to any model's outputs at evaluation time.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{BinaryReport, MetricError, binary_report};

/// One sample-level prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplePrediction {
    /// Sample id (unique within a split), e.g. `clip_0007/w3`.
    pub id: String,
    /// The video this sample belongs to.
    pub video_id: String,
    /// 1 = fake (positive), 0 = real.
    pub label: u8,
    /// Probability (or any score; higher = more fake) for this sample.
    pub score: f64,
}

/// One video-level prediction, made by [`aggregate_videos`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoPrediction {
    /// The video id.
    pub video_id: String,
    /// The label shared by all of its samples.
    pub label: u8,
    /// Aggregated score.
    pub score: f64,
    /// Number of samples aggregated (>= 1).
    pub n_samples: usize,
}

/// How per-sample scores of one video are combined; see the [module documentation](self).
/// Serialised as `{"method": "mean"}`, `{"method": "max"}` or
/// `{"method": "attention", "temperature": 0.1}`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Aggregation {
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
    /// Softmax-weighted mean with weights `softmax(p / temperature)`.
    Attention {
        /// Softmax temperature, finite and > 0 (in score units).
        temperature: f64,
    },
}

impl std::fmt::Display for Aggregation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Aggregation::Mean => f.write_str("mean"),
            Aggregation::Max => f.write_str("max"),
            Aggregation::Attention { temperature } => write!(f, "attention(T={temperature})"),
        }
    }
}

impl Aggregation {
    /// Combine the scores of one video (`scores` non-empty and finite).
    fn apply(self, scores: &[f64]) -> f64 {
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        match self {
            Aggregation::Mean => scores.iter().sum::<f64>() / scores.len() as f64,
            Aggregation::Max => max,
            Aggregation::Attention { temperature } => {
                let (mut num, mut den) = (0.0, 0.0);
                for &s in scores {
                    let w = ((s - max) / temperature).exp();
                    num += w * s;
                    den += w;
                }
                num / den
            }
        }
    }
}

/// Group samples by `video_id` and aggregate their scores; videos come out in the order of
/// their first sample.
///
/// # Errors
/// [`MetricError::EmptyInput`], [`MetricError::InvalidLabel`], [`MetricError::NonFinite`]
/// (indices into `samples`), [`MetricError::InconsistentVideoLabel`] when one video has
/// samples labelled 0 and 1, [`MetricError::InvalidTemperature`].
pub fn aggregate_videos(
    samples: &[SamplePrediction],
    aggregation: Aggregation,
) -> Result<Vec<VideoPrediction>, MetricError> {
    if let Aggregation::Attention { temperature } = aggregation
        && !(temperature.is_finite() && temperature > 0.0)
    {
        return Err(MetricError::InvalidTemperature(temperature));
    }
    if samples.is_empty() {
        return Err(MetricError::EmptyInput);
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(&str, u8, Vec<f64>)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        if s.label > 1 {
            return Err(MetricError::InvalidLabel {
                index: i,
                value: s.label,
            });
        }
        if !s.score.is_finite() {
            return Err(MetricError::NonFinite {
                index: i,
                value: s.score,
            });
        }
        let g = *index.entry(&s.video_id).or_insert_with(|| {
            groups.push((&s.video_id, s.label, Vec::new()));
            groups.len() - 1
        });
        if groups[g].1 != s.label {
            return Err(MetricError::InconsistentVideoLabel {
                video_id: s.video_id.clone(),
            });
        }
        groups[g].2.push(s.score);
    }
    Ok(groups
        .into_iter()
        .map(|(video_id, label, scores)| VideoPrediction {
            video_id: video_id.to_string(),
            label,
            score: aggregation.apply(&scores),
            n_samples: scores.len(),
        })
        .collect())
}

/// [`binary_report`] over sample-level predictions.
///
/// # Errors
/// As [`binary_report`].
pub fn sample_report(
    samples: &[SamplePrediction],
    threshold: f64,
) -> Result<BinaryReport, MetricError> {
    let labels: Vec<u8> = samples.iter().map(|s| s.label).collect();
    let scores: Vec<f64> = samples.iter().map(|s| s.score).collect();
    binary_report(&labels, &scores, threshold)
}

/// [`binary_report`] over video-level predictions.
///
/// # Errors
/// As [`binary_report`].
pub fn video_report(
    videos: &[VideoPrediction],
    threshold: f64,
) -> Result<BinaryReport, MetricError> {
    let labels: Vec<u8> = videos.iter().map(|v| v.label).collect();
    let scores: Vec<f64> = videos.iter().map(|v| v.score).collect();
    binary_report(&labels, &scores, threshold)
}

/// Video-level metrics, with the aggregation that produced them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoLevelReport {
    /// How sample scores were combined.
    pub aggregation: Aggregation,
    /// Number of videos (`report.n`).
    pub n_videos: usize,
    /// Metrics over one score per video.
    pub report: BinaryReport,
}

/// Sample-level and video-level metrics of one evaluation, never mixed: serialised as
/// `{"sample_level": {...}, "video_level": {"aggregation": ..., "n_videos": ..., "report":
/// {...}}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LevelReports {
    /// Metrics over every sample.
    pub sample_level: BinaryReport,
    /// Metrics over videos.
    pub video_level: VideoLevelReport,
}

/// Both levels at one `threshold` (applied to sample scores and to aggregated video scores).
///
/// # Errors
/// As [`aggregate_videos`] and [`binary_report`].
pub fn level_reports(
    samples: &[SamplePrediction],
    aggregation: Aggregation,
    threshold: f64,
) -> Result<LevelReports, MetricError> {
    let videos = aggregate_videos(samples, aggregation)?;
    Ok(LevelReports {
        sample_level: sample_report(samples, threshold)?,
        video_level: VideoLevelReport {
            aggregation,
            n_videos: videos.len(),
            report: video_report(&videos, threshold)?,
        },
    })
}
