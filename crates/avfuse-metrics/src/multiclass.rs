//! Multi-class metrics (accuracy, per-class and macro precision/recall/F1, a K x K confusion
//! matrix) for benchmarks such as AV digits (10 classes).
//!
//! Classes are `0..num_classes`; every class counts in the macro averages, including classes
//! absent from both labels and predictions, exactly like scikit-learn with
//! `labels=range(num_classes)` and `zero_division=0`:
//!
//! - `accuracy_score(y, p)`
//! - `precision_recall_fscore_support(y, p, labels=range(K), zero_division=0)` per class
//! - `f1_score(y, p, labels=range(K), average="macro", zero_division=0)` (and precision,
//!   recall likewise)
//! - `confusion_matrix(y, p, labels=range(K))`: rows are true classes, columns predictions.
//!
//! `tests/sklearn_fixtures.rs` checks all of them against scikit-learn.

use serde::{Deserialize, Serialize};

use crate::MetricError;

/// Metrics of one class (one-vs-rest counts from the confusion matrix).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// `tp / (tp + fp)`, 0 when the class is never predicted.
    pub precision: f64,
    /// `tp / (tp + fn)`, 0 when the class has no samples.
    pub recall: f64,
    /// `2 tp / (2 tp + fp + fn)`, 0 when that denominator is 0.
    pub f1: f64,
    /// Number of samples whose label is this class.
    pub support: u64,
}

/// Every multi-class metric for one set of predictions; see [`multiclass_report`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MulticlassReport {
    /// Number of samples.
    pub n: usize,
    /// Number of classes `K`.
    pub num_classes: usize,
    /// Fraction of samples whose prediction equals the label.
    pub accuracy: f64,
    /// Unweighted mean of the per-class precisions (all `K` classes).
    pub macro_precision: f64,
    /// Unweighted mean of the per-class recalls (all `K` classes).
    pub macro_recall: f64,
    /// Unweighted mean of the per-class F1 scores (all `K` classes).
    pub macro_f1: f64,
    /// Per-class metrics, indexed by class.
    pub per_class: Vec<ClassMetrics>,
    /// `[K][K]` counts: `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

fn check_classes(values: &[usize], num_classes: usize) -> Result<(), MetricError> {
    match values.iter().position(|&v| v >= num_classes) {
        Some(index) => Err(MetricError::InvalidClass {
            index,
            value: values[index],
            num_classes,
        }),
        None => Ok(()),
    }
}

/// Multi-class metrics of predicted classes `preds` against true classes `labels`, both in
/// `0..num_classes` (see the module documentation for the scikit-learn equivalents).
///
/// # Errors
/// [`MetricError::LengthMismatch`], [`MetricError::EmptyInput`],
/// [`MetricError::InvalidNumClasses`] when `num_classes == 0`, [`MetricError::InvalidClass`]
/// for a label (checked first) or prediction outside `0..num_classes`.
pub fn multiclass_report(
    labels: &[usize],
    preds: &[usize],
    num_classes: usize,
) -> Result<MulticlassReport, MetricError> {
    if labels.len() != preds.len() {
        return Err(MetricError::LengthMismatch {
            labels: labels.len(),
            scores: preds.len(),
        });
    }
    if labels.is_empty() {
        return Err(MetricError::EmptyInput);
    }
    if num_classes == 0 {
        return Err(MetricError::InvalidNumClasses {
            num_classes,
            len: labels.len(),
        });
    }
    check_classes(labels, num_classes)?;
    check_classes(preds, num_classes)?;

    let mut confusion = vec![vec![0u64; num_classes]; num_classes];
    for (&y, &p) in labels.iter().zip(preds) {
        confusion[y][p] += 1;
    }
    let ratio = |num: u64, den: u64| {
        if den == 0 {
            0.0
        } else {
            num as f64 / den as f64
        }
    };
    let per_class: Vec<ClassMetrics> = (0..num_classes)
        .map(|k| {
            let tp = confusion[k][k];
            let support: u64 = confusion[k].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[k]).sum();
            let (fn_, fp) = (support - tp, predicted - tp);
            ClassMetrics {
                precision: ratio(tp, predicted),
                recall: ratio(tp, support),
                f1: ratio(2 * tp, 2 * tp + fp + fn_),
                support,
            }
        })
        .collect();
    let correct: u64 = (0..num_classes).map(|k| confusion[k][k]).sum();
    let mean = |f: fn(&ClassMetrics) -> f64| -> f64 {
        per_class.iter().map(f).sum::<f64>() / num_classes as f64
    };
    Ok(MulticlassReport {
        n: labels.len(),
        num_classes,
        accuracy: ratio(correct, labels.len() as u64),
        macro_precision: mean(|c| c.precision),
        macro_recall: mean(|c| c.recall),
        macro_f1: mean(|c| c.f1),
        per_class,
        confusion,
    })
}

/// Row-wise argmax of a row-major `[N, K]` score matrix (`scores.len() == N * K`), the first
/// maximum on ties (as `numpy.argmax` and `torch.argmax`).
///
/// # Errors
/// [`MetricError::InvalidNumClasses`] when `num_classes == 0` or does not divide
/// `scores.len()`, [`MetricError::NonFinite`] for a NaN or infinite score (its flat index).
pub fn argmax_rows(scores: &[f64], num_classes: usize) -> Result<Vec<usize>, MetricError> {
    if num_classes == 0 || !scores.len().is_multiple_of(num_classes) {
        return Err(MetricError::InvalidNumClasses {
            num_classes,
            len: scores.len(),
        });
    }
    if let Some(index) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricError::NonFinite {
            index,
            value: scores[index],
        });
    }
    Ok(scores
        .chunks_exact(num_classes)
        .map(|row| {
            let mut best = 0;
            for (k, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = k;
                }
            }
            best
        })
        .collect())
}
