//! Classification metrics for avfuse: binary detection metrics for the deepfake detectors,
//! multi-class metrics ([`multiclass`]) for benchmarks such as AV digits, and video-level
//! aggregation ([`video`]) that keeps sample-level and video-level results in distinct types.
//!
//! Conventions shared by every function:
//!
//! - `labels[i]` is `1` for the positive class (fake) and `0` for the negative
//!   class (real); any other value is [`MetricError::InvalidLabel`].
//! - `scores[i]` is "how fake" sample `i` looks: higher means more likely
//!   positive. Scores must be finite ([`MetricError::NonFinite`]). `-0.0` is
//!   treated as `0.0`.
//! - Ranking metrics sort samples by decreasing score with a stable sort and
//!   [`f64::total_cmp`], so results are deterministic. Samples with equal scores
//!   form a single operating point (sklearn's `_binary_clf_curve`), so the
//!   input order never matters.
//! - Ranking metrics (ROC, AUC, AP, AUPR, EER, FPR@TPR) need both classes and
//!   return [`MetricError::SingleClass`] otherwise. [`binary_report`] instead
//!   reports them as `None`.
//!
//! Every function names the scikit-learn (or downstream package) expression it
//! mirrors; `tests/sklearn_fixtures.rs` checks them against scikit-learn to
//! `1e-12`.
//!
//! ```
//! use avfuse_metrics::{average_precision, aupr_trapezoid, binary_report, roc_auc};
//!
//! let labels = [0, 0, 0, 1, 0];
//! let scores = [0.1, 0.3, 0.6, 0.9, 1.3];
//! assert_eq!(roc_auc(&labels, &scores)?, 0.75);
//! assert_eq!(average_precision(&labels, &scores)?, 0.5);
//! assert_eq!(aupr_trapezoid(&labels, &scores)?, 0.25);
//! let report = binary_report(&labels, &scores, 0.5)?;
//! assert_eq!((report.confusion.tp, report.confusion.fp), (1, 2));
//! assert_eq!((report.auc, report.aupr, report.fpr_at_95_tpr), (Some(0.75), Some(0.25), Some(0.25)));
//! # Ok::<(), avfuse_metrics::MetricError>(())
//! ```

use serde::{Deserialize, Serialize};

pub mod multiclass;
pub mod video;

pub use multiclass::{ClassMetrics, MulticlassReport, argmax_rows, multiclass_report};
pub use video::{
    Aggregation, LevelReports, SamplePrediction, VideoLevelReport, VideoPrediction,
    aggregate_videos, level_reports, sample_report, video_report,
};

/// Why a metric could not be computed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// No samples at all.
    #[error("empty input: at least one (label, score) pair is required")]
    EmptyInput,
    /// `labels` and `scores` have different lengths.
    #[error("length mismatch: {labels} labels but {scores} scores")]
    LengthMismatch {
        /// Number of labels.
        labels: usize,
        /// Number of scores.
        scores: usize,
    },
    /// Every label equals `class`; ranking metrics are undefined.
    #[error("only one class present in labels (all {class}): AUC/AP is undefined")]
    SingleClass {
        /// The only class present (0 or 1).
        class: u8,
    },
    /// `scores[index]` is NaN or infinite.
    #[error("non-finite score {value} at index {index}")]
    NonFinite {
        /// Position of the offending score.
        index: usize,
        /// The offending score.
        value: f64,
    },
    /// `labels[index]` is neither 0 nor 1.
    #[error("invalid label {value} at index {index}: labels must be 0 (real) or 1 (fake)")]
    InvalidLabel {
        /// Position of the offending label.
        index: usize,
        /// The offending label.
        value: u8,
    },
    /// A multi-class label or prediction `value` at `index` is not below `num_classes`.
    #[error("invalid class {value} at index {index}: must be < num_classes = {num_classes}")]
    InvalidClass {
        /// Position of the offending entry.
        index: usize,
        /// The offending class index.
        value: usize,
        /// Number of classes.
        num_classes: usize,
    },
    /// A multi-class problem needs at least one class; a score matrix needs a non-zero width
    /// that divides its length.
    #[error("invalid number of classes {num_classes} for {len} values")]
    InvalidNumClasses {
        /// Requested number of classes.
        num_classes: usize,
        /// Number of values supplied.
        len: usize,
    },
    /// Samples of one video carry different labels, so a video label is undefined.
    #[error("video {video_id}: its samples have different labels (0 and 1)")]
    InconsistentVideoLabel {
        /// The video id.
        video_id: String,
    },
    /// The attention aggregation's temperature must be finite and > 0.
    #[error("attention temperature must be finite and > 0, got {0}")]
    InvalidTemperature(f64),
}

/// A ROC curve, one point per distinct score plus a leading origin point.
///
/// Ordered by decreasing threshold: `thresholds[0]` is `f64::INFINITY` with
/// `fpr[0] == tpr[0] == 0.0`; `thresholds[k]` (k ≥ 1) is the k-th largest
/// distinct score, and `fpr[k]`/`tpr[k]` are the rates when samples with
/// `score >= thresholds[k]` are predicted positive. The last point is
/// `(1.0, 1.0)`. Identical to `sklearn.metrics.roc_curve(y, s,
/// drop_intermediate=False)` (sklearn ≥ 1.3, which uses `inf` as the first
/// threshold).
#[derive(Clone, Debug, PartialEq)]
pub struct RocCurve {
    /// False-positive rate `FP / N` at each threshold (non-decreasing).
    pub fpr: Vec<f64>,
    /// True-positive rate `TP / P` at each threshold (non-decreasing).
    pub tpr: Vec<f64>,
    /// Decision thresholds, strictly decreasing, first one `+inf`.
    pub thresholds: Vec<f64>,
}

/// Confusion matrix counts at a fixed threshold; the same numbers as
/// `sklearn.metrics.confusion_matrix(y, pred, labels=[0, 1]).ravel()`
/// (`tn, fp, fn, tp`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Confusion {
    /// Label 0, predicted 0.
    pub tn: u64,
    /// Label 0, predicted 1.
    pub fp: u64,
    /// Label 1, predicted 0 (serialised as `"fn"`).
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Label 1, predicted 1.
    pub tp: u64,
}

/// A precision-recall curve in scikit-learn's layout: identical to
/// `precision, recall, thresholds = sklearn.metrics.precision_recall_curve(y, s)`
/// (`drop_intermediate=False`, the default).
///
/// Ordered by **increasing** threshold: `thresholds[k]` is the k-th smallest distinct score;
/// `precision[k]`/`recall[k]` are the rates when samples with `score >= thresholds[k]` are
/// predicted positive. `precision` and `recall` have one more element than `thresholds`: the
/// final point `(precision 1, recall 0)` with no threshold. `recall` is non-increasing.
#[derive(Clone, Debug, PartialEq)]
pub struct PrCurve {
    /// `TP / (TP + FP)` per threshold, then 1.
    pub precision: Vec<f64>,
    /// `TP / P` per threshold, then 0.
    pub recall: Vec<f64>,
    /// Distinct scores, strictly increasing.
    pub thresholds: Vec<f64>,
}

/// Every metric for one set of binary predictions; see [`binary_report`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BinaryReport {
    /// Number of samples.
    pub n: usize,
    /// Number of samples with label 1.
    pub n_positive: usize,
    /// Decision threshold: predicted positive iff `score >= threshold`.
    pub threshold: f64,
    /// [`roc_auc`]; `None` when only one class is present.
    pub auc: Option<f64>,
    /// [`average_precision`] (scikit-learn's step-wise AP, 0.5 on the `ood-metrics` vector);
    /// `None` when only one class is present.
    pub ap: Option<f64>,
    /// [`aupr_trapezoid`] (the `ood-metrics` "AUPR", 0.25 on its test vector, which issue 8
    /// calls "AP 0.25"); `None` when only one class is present. Absent in reports written
    /// before this field existed (deserialises as `None`).
    #[serde(default)]
    pub aupr: Option<f64>,
    /// `(tp + tn) / n` (`sklearn.metrics.accuracy_score`).
    pub accuracy: f64,
    /// `tp / (tp + fp)`, 0 when nothing is predicted positive
    /// (`precision_score(zero_division=0)`).
    pub precision: f64,
    /// `tp / (tp + fn)`, 0 when there are no positives
    /// (`recall_score(zero_division=0)`).
    pub recall: f64,
    /// `2 tp / (2 tp + fp + fn)`, 0 when that denominator is 0
    /// (`f1_score(zero_division=0)`).
    pub f1: f64,
    /// [`eer`]; `None` when only one class is present.
    pub eer: Option<f64>,
    /// [`fpr_at_tpr`] with target 0.95; `None` when only one class is present.
    pub fpr_at_95_tpr: Option<f64>,
    /// Confusion matrix at `threshold`.
    pub confusion: Confusion,
}

/// Checks lengths, emptiness, labels and scores (in that order; per-element
/// errors report the first offending index, a label before the score at the
/// same index). Returns the number of positives.
fn validate(labels: &[u8], scores: &[f64]) -> Result<usize, MetricError> {
    if labels.len() != scores.len() {
        return Err(MetricError::LengthMismatch {
            labels: labels.len(),
            scores: scores.len(),
        });
    }
    if labels.is_empty() {
        return Err(MetricError::EmptyInput);
    }
    let mut n_positive = 0;
    for (index, (&label, &score)) in labels.iter().zip(scores).enumerate() {
        match label {
            0 => {}
            1 => n_positive += 1,
            value => return Err(MetricError::InvalidLabel { index, value }),
        }
        if !score.is_finite() {
            return Err(MetricError::NonFinite {
                index,
                value: score,
            });
        }
    }
    Ok(n_positive)
}

/// Cumulative counts at each distinct threshold (sklearn's `_binary_clf_curve`
/// with a leading `(0, 0, +inf)` point prepended, as `roc_curve` does).
struct Ranked {
    fps: Vec<u64>,
    tps: Vec<u64>,
    thresholds: Vec<f64>,
    n_pos: u64,
    n_neg: u64,
}

impl Ranked {
    fn fpr(&self, k: usize) -> f64 {
        self.fps[k] as f64 / self.n_neg as f64
    }

    fn tpr(&self, k: usize) -> f64 {
        self.tps[k] as f64 / self.n_pos as f64
    }

    /// `tp / (tp + fp)` at point `k >= 1` (every such point has ≥ 1 sample).
    fn precision(&self, k: usize) -> f64 {
        self.tps[k] as f64 / (self.tps[k] + self.fps[k]) as f64
    }
}

/// Sorts `scores` decreasingly and accumulates counts per distinct score.
/// Inputs must already be validated.
fn rank_validated(labels: &[u8], scores: &[f64], n_positive: usize) -> Result<Ranked, MetricError> {
    let n = labels.len();
    if n_positive == 0 {
        return Err(MetricError::SingleClass { class: 0 });
    }
    if n_positive == n {
        return Err(MetricError::SingleClass { class: 1 });
    }
    // Normalise -0.0 to 0.0 so equal scores are adjacent and compare equal.
    let mut pairs: Vec<(f64, u8)> = scores
        .iter()
        .zip(labels)
        .map(|(&s, &l)| (if s == 0.0 { 0.0 } else { s }, l))
        .collect();
    // Stable sort, decreasing score.
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));

    let mut ranked = Ranked {
        fps: vec![0],
        tps: vec![0],
        thresholds: vec![f64::INFINITY],
        n_pos: n_positive as u64,
        n_neg: (n - n_positive) as u64,
    };
    let (mut tp, mut fp) = (0u64, 0u64);
    for (i, &(score, label)) in pairs.iter().enumerate() {
        if label == 1 {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_group = pairs.get(i + 1).is_none_or(|next| next.0 != score);
        if last_of_group {
            ranked.fps.push(fp);
            ranked.tps.push(tp);
            ranked.thresholds.push(score);
        }
    }
    Ok(ranked)
}

fn rank(labels: &[u8], scores: &[f64]) -> Result<Ranked, MetricError> {
    let n_positive = validate(labels, scores)?;
    rank_validated(labels, scores, n_positive)
}

fn roc_from(r: &Ranked) -> RocCurve {
    let m = r.thresholds.len();
    RocCurve {
        fpr: (0..m).map(|k| r.fpr(k)).collect(),
        tpr: (0..m).map(|k| r.tpr(k)).collect(),
        thresholds: r.thresholds.clone(),
    }
}

fn pr_from(r: &Ranked) -> PrCurve {
    // Points 1..m of `Ranked` are sklearn's `_binary_clf_curve` points (decreasing threshold);
    // sklearn reverses them and appends (precision 1, recall 0).
    let m = r.thresholds.len();
    let mut precision: Vec<f64> = (1..m).rev().map(|k| r.precision(k)).collect();
    let mut recall: Vec<f64> = (1..m).rev().map(|k| r.tpr(k)).collect();
    precision.push(1.0);
    recall.push(0.0);
    PrCurve {
        precision,
        recall,
        thresholds: r.thresholds[1..].iter().rev().copied().collect(),
    }
}

fn auc_from(r: &Ranked) -> f64 {
    // Trapezoidal area under (fpr, tpr), accumulated exactly in integers:
    // 2·P·N·area = Σ ΔFP · (TP_prev + TP_cur).
    let twice_area: u128 = (1..r.fps.len())
        .map(|k| u128::from(r.fps[k] - r.fps[k - 1]) * u128::from(r.tps[k] + r.tps[k - 1]))
        .sum();
    let denom = 2 * u128::from(r.n_pos) * u128::from(r.n_neg);
    twice_area as f64 / denom as f64
}

fn ap_from(r: &Ranked) -> f64 {
    (1..r.tps.len())
        .map(|k| (r.tpr(k) - r.tpr(k - 1)) * r.precision(k))
        .sum()
}

fn aupr_from(r: &Ranked) -> f64 {
    // precision_recall_curve appends (recall 0, precision 1) as the point with
    // the highest threshold; it plays the role of our leading origin point.
    (1..r.tps.len())
        .map(|k| {
            let prev_precision = if k == 1 { 1.0 } else { r.precision(k - 1) };
            (r.tpr(k) - r.tpr(k - 1)) * (r.precision(k) + prev_precision) / 2.0
        })
        .sum()
}

fn eer_from(r: &Ranked) -> f64 {
    // DeepfakeBench calls `roc_curve` with the default `drop_intermediate=True`,
    // which keeps the origin, the first and last thresholds, and every interior
    // threshold where the second difference of FP or TP counts is non-zero.
    let m = r.fps.len(); // origin + distinct thresholds
    let second_diff = |v: &[u64], j: usize| v[j + 1] as i128 - 2 * v[j] as i128 + v[j - 1] as i128;
    let kept = |j: usize| {
        j <= 1
            || j == m - 1
            || m - 1 <= 2
            || second_diff(&r.fps, j) != 0
            || second_diff(&r.tps, j) != 0
    };
    let mut best = 0;
    let mut best_gap = f64::INFINITY;
    for k in (0..m).filter(|&k| kept(k)) {
        let gap = ((1.0 - r.tpr(k)) - r.fpr(k)).abs();
        if gap < best_gap {
            best_gap = gap;
            best = k;
        }
    }
    r.fpr(best)
}

fn fpr_at_tpr_from(r: &Ranked, tpr_target: f64) -> f64 {
    // The last point has tpr == 1.0 >= target, so a point always exists.
    let k = (0..r.tps.len())
        .find(|&k| r.tpr(k) >= tpr_target)
        .unwrap_or(r.tps.len() - 1);
    r.fpr(k)
}

fn assert_tpr_target(tpr_target: f64) {
    assert!(
        (0.0..=1.0).contains(&tpr_target),
        "fpr_at_tpr: tpr_target must be in [0, 1], got {tpr_target}"
    );
}

/// ROC curve; mirrors `sklearn.metrics.roc_curve(labels, scores,
/// drop_intermediate=False)` exactly (see [`RocCurve`] for the layout),
/// including the leading `(0, 0)` point at threshold `+inf`. Tied scores are
/// grouped into one point.
///
/// # Errors
/// [`MetricError::LengthMismatch`], [`MetricError::EmptyInput`],
/// [`MetricError::InvalidLabel`], [`MetricError::NonFinite`],
/// [`MetricError::SingleClass`] (sklearn would return NaN rates instead).
pub fn roc_curve(labels: &[u8], scores: &[f64]) -> Result<RocCurve, MetricError> {
    Ok(roc_from(&rank(labels, scores)?))
}

/// Precision-recall curve; mirrors `sklearn.metrics.precision_recall_curve(labels, scores)`
/// exactly (see [`PrCurve`] for the layout). Tied scores are grouped into one point. Plot
/// `recall` on x and `precision` on y.
///
/// # Errors
/// As [`roc_curve`]. (sklearn returns a curve for all-positive labels and recall 1 with a
/// warning for all-negative labels; this crate reports [`MetricError::SingleClass`].)
pub fn precision_recall_curve(labels: &[u8], scores: &[f64]) -> Result<PrCurve, MetricError> {
    Ok(pr_from(&rank(labels, scores)?))
}

/// Area under the ROC curve; mirrors `sklearn.metrics.roc_auc_score(labels,
/// scores)` for binary labels.
///
/// Equals the trapezoidal area under [`roc_curve`], i.e. the probability that
/// a random positive scores higher than a random negative, with ties counting
/// 1/2 (the Mann–Whitney U statistic / (P·N)). All-equal scores give 0.5.
///
/// # Errors
/// As [`roc_curve`].
pub fn roc_auc(labels: &[u8], scores: &[f64]) -> Result<f64, MetricError> {
    Ok(auc_from(&rank(labels, scores)?))
}

/// Average precision; mirrors `sklearn.metrics.average_precision_score(labels,
/// scores)`: `AP = Σ_k (R_k − R_{k−1}) · P_k` over the distinct thresholds in
/// decreasing order (`R_0 = 0`), where `P_k`, `R_k` are precision and recall
/// when predicting `score >= threshold_k` positive. It is a step-wise
/// (right-endpoint) integral of the precision–recall curve with no
/// interpolation.
///
/// # Why this differs from [`aupr_trapezoid`]
/// For labels `[0, 0, 0, 1, 0]`, scores `[0.1, 0.3, 0.6, 0.9, 1.3]` the
/// precision–recall points by decreasing threshold are `(R 0, P 1)` (the
/// implicit start), `(R 0, P 0)` at 1.3 (a negative ranks first) and
/// `(R 1, P 1/2)` at 0.9; lower thresholds keep `R = 1`. AP weights the only
/// recall step (0 → 1) by the precision *reached*, `1/2`, giving **0.5**. The
/// trapezoid rule instead averages the two endpoints of that step,
/// `(0 + 1/2) / 2`, giving **0.25**: it linearly interpolates precision, which
/// is known to be optimistic or pessimistic depending on the curve.
///
/// # Errors
/// As [`roc_curve`]. Note that sklearn returns 1.0 for all-positive labels and
/// warns/returns 0 for all-negative labels; this crate reports
/// [`MetricError::SingleClass`] for both.
pub fn average_precision(labels: &[u8], scores: &[f64]) -> Result<f64, MetricError> {
    Ok(ap_from(&rank(labels, scores)?))
}

/// Trapezoidal area under the precision–recall curve; mirrors
/// `p, r, _ = sklearn.metrics.precision_recall_curve(labels, scores);
/// sklearn.metrics.auc(r, p)`, which is the `aupr` of the `ood-metrics`
/// package (`aupr_in` of its `calc_metrics`).
///
/// The curve includes sklearn's appended start point `(recall 0, precision 1)`
/// and one point per distinct score; consecutive points are joined linearly.
/// See [`average_precision`] for why the two differ.
///
/// # Errors
/// As [`roc_curve`].
pub fn aupr_trapezoid(labels: &[u8], scores: &[f64]) -> Result<f64, MetricError> {
    Ok(aupr_from(&rank(labels, scores)?))
}

/// Equal error rate exactly as DeepfakeBench computes it
/// (`training/metrics/utils.py::get_test_metrics`):
/// `fpr, tpr, _ = sklearn.metrics.roc_curve(labels, scores)`, then
/// `fpr[np.nanargmin(np.absolute((1 - tpr) - fpr))]`.
///
/// No interpolation: the result is always an achievable FPR, taken at the
/// first (highest-threshold) point on exact ties, as `argmin` does. Note that
/// DeepfakeBench uses `roc_curve`'s default `drop_intermediate=True`, so the
/// search runs over that thinned point set (origin, first and last threshold,
/// and every threshold where the second difference of the FP or TP counts is
/// non-zero), **not** over every point of [`roc_curve`]. This matters: when the
/// curve crosses `fpr = 1 − tpr` between two kept points, a dropped interior
/// point can be closer to the crossing, and the full-curve argmin would then
/// differ from DeepfakeBench's reported EER.
///
/// # Errors
/// As [`roc_curve`].
pub fn eer(labels: &[u8], scores: &[f64]) -> Result<f64, MetricError> {
    Ok(eer_from(&rank(labels, scores)?))
}

/// False-positive rate at the first point of [`roc_curve`] (by decreasing
/// threshold) whose true-positive rate is `>= tpr_target`:
/// `fpr[argmax(tpr >= tpr_target)]`. Because FPR is non-decreasing along the
/// curve, this is the smallest FPR among all thresholds reaching the target.
///
/// This is the conservative, achievable-operating-point form of the `ood-metrics`
/// `fpr_at_95_tpr`. The latter agrees on its "all TPR ≥ target" branch, but
/// when the curve crosses the target (the usual case) it returns
/// `np.interp(target, tpr, fpr)` over the `drop_intermediate=True` curve, a
/// linear interpolation between the two points around the target; that can
/// be lower than this value. Both give 0.25 on the `ood-metrics` test vector.
///
/// # Errors
/// As [`roc_curve`].
///
/// # Panics
/// If `tpr_target` is not in `[0, 1]` (NaN included).
pub fn fpr_at_tpr(labels: &[u8], scores: &[f64], tpr_target: f64) -> Result<f64, MetricError> {
    assert_tpr_target(tpr_target);
    Ok(fpr_at_tpr_from(&rank(labels, scores)?, tpr_target))
}

/// Thresholded and ranking metrics in one pass.
///
/// A sample is predicted positive iff `score >= threshold`. Accuracy,
/// precision, recall and F1 follow `sklearn.metrics.accuracy_score`,
/// `precision_score`, `recall_score`, `f1_score` with `zero_division=0`;
/// [`Confusion`] follows `confusion_matrix(labels=[0, 1])`. `auc`, `ap`,
/// `eer` and `fpr_at_95_tpr` are [`roc_auc`], [`average_precision`], [`eer`]
/// and [`fpr_at_tpr`]`(.., 0.95)` (and `aupr` is [`aupr_trapezoid`]), or `None`
/// (not an error) when only one class is present. (DeepfakeBench's `acc` uses a strict `score > 0.5`; pass a
/// threshold one ULP above 0.5 to reproduce it.)
///
/// # Errors
/// [`MetricError::LengthMismatch`], [`MetricError::EmptyInput`],
/// [`MetricError::InvalidLabel`], [`MetricError::NonFinite`].
///
/// # Panics
/// If `threshold` is NaN. (Infinite thresholds are accepted, but JSON cannot
/// represent them, so such a report does not round-trip through serde_json.)
pub fn binary_report(
    labels: &[u8],
    scores: &[f64],
    threshold: f64,
) -> Result<BinaryReport, MetricError> {
    assert!(
        !threshold.is_nan(),
        "binary_report: threshold must not be NaN"
    );
    let n_positive = validate(labels, scores)?;
    let n = labels.len();

    let mut c = Confusion {
        tn: 0,
        fp: 0,
        fn_: 0,
        tp: 0,
    };
    for (&label, &score) in labels.iter().zip(scores) {
        match (label == 1, score >= threshold) {
            (false, false) => c.tn += 1,
            (false, true) => c.fp += 1,
            (true, false) => c.fn_ += 1,
            (true, true) => c.tp += 1,
        }
    }
    let ratio = |num: u64, den: u64| {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    };
    let accuracy = ratio(c.tp + c.tn, n as u64);
    let precision = ratio(c.tp, c.tp + c.fp);
    let recall = ratio(c.tp, c.tp + c.fn_);
    let f1 = ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn_);

    let ranked = match rank_validated(labels, scores, n_positive) {
        Ok(r) => Some(r),
        Err(MetricError::SingleClass { .. }) => None,
        Err(e) => return Err(e),
    };

    Ok(BinaryReport {
        n,
        n_positive,
        threshold,
        auc: ranked.as_ref().map(auc_from),
        ap: ranked.as_ref().map(ap_from),
        aupr: ranked.as_ref().map(aupr_from),
        accuracy,
        precision,
        recall,
        f1,
        eer: ranked.as_ref().map(eer_from),
        fpr_at_95_tpr: ranked.as_ref().map(|r| fpr_at_tpr_from(r, 0.95)),
        confusion: c,
    })
}
