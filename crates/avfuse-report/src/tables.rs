//! Prediction files (CSV / JSON, per sample and per video) and the robustness table
//! (markdown / CSV / JSON). Every writer is atomic ([`crate::write_atomic`]).

use std::path::Path;

use avfuse_metrics::{BinaryReport, SamplePrediction, VideoPrediction};
use serde::{Deserialize, Serialize};

use crate::{ReportError, Result, write_atomic};

/// One row of a prediction file. The same columns serve both levels, in separate files:
/// per sample (`id` the sample id) and per video (`id == video_id`). Columns, in order:
/// `id, video_id, label, score, pred, modality_set, corruption`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    /// Sample id (per-sample file) or video id (per-video file).
    pub id: String,
    /// The video the row belongs to.
    pub video_id: String,
    /// True label: 1 fake, 0 real.
    pub label: u8,
    /// Predicted probability of "fake" (or aggregated video score).
    pub score: f64,
    /// Predicted label: 1 iff `score >= threshold`.
    pub pred: u8,
    /// Modalities present at test time, e.g. `audio+video`, `video`, `audio`.
    pub modality_set: String,
    /// Corruption applied, `none` or `<kind>@<level>` (e.g. `noise@0.1`).
    pub corruption: String,
}

/// Per-sample rows of one evaluation setting (`pred = score >= threshold`).
pub fn sample_rows(
    samples: &[SamplePrediction],
    threshold: f64,
    modality_set: &str,
    corruption: &str,
) -> Vec<PredictionRow> {
    samples
        .iter()
        .map(|s| PredictionRow {
            id: s.id.clone(),
            video_id: s.video_id.clone(),
            label: s.label,
            score: s.score,
            pred: u8::from(s.score >= threshold),
            modality_set: modality_set.to_string(),
            corruption: corruption.to_string(),
        })
        .collect()
}

/// Per-video rows of one evaluation setting (`id == video_id`, `pred = score >= threshold`).
pub fn video_rows(
    videos: &[VideoPrediction],
    threshold: f64,
    modality_set: &str,
    corruption: &str,
) -> Vec<PredictionRow> {
    videos
        .iter()
        .map(|v| PredictionRow {
            id: v.video_id.clone(),
            video_id: v.video_id.clone(),
            label: v.label,
            score: v.score,
            pred: u8::from(v.score >= threshold),
            modality_set: modality_set.to_string(),
            corruption: corruption.to_string(),
        })
        .collect()
}

fn csv_bytes<T: Serialize>(rows: &[T], header_if_empty: &[&str]) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(!rows.is_empty())
        .from_writer(Vec::new());
    if rows.is_empty() {
        w.write_record(header_if_empty)?;
    }
    for r in rows {
        w.serialize(r)?;
    }
    w.into_inner()
        .map_err(|e| ReportError::Invalid(format!("csv: {}", e.error())))
}

const PREDICTION_COLUMNS: [&str; 7] = [
    "id",
    "video_id",
    "label",
    "score",
    "pred",
    "modality_set",
    "corruption",
];

/// Write prediction rows as CSV with a header (also for no rows). Scores are written with
/// Rust's shortest round-trip formatting, so reading them back gives the same `f64`.
///
/// # Errors
/// [`ReportError::Csv`], [`ReportError::Io`].
pub fn write_predictions_csv(path: &Path, rows: &[PredictionRow]) -> Result<()> {
    write_atomic(path, &csv_bytes(rows, &PREDICTION_COLUMNS)?)
}

/// Write prediction rows as a pretty-printed JSON array of objects with the CSV's columns.
///
/// # Errors
/// [`ReportError::Invalid`] for a non-finite score (JSON has no NaN/Inf),
/// [`ReportError::Json`], [`ReportError::Io`].
pub fn write_predictions_json(path: &Path, rows: &[PredictionRow]) -> Result<()> {
    if let Some(r) = rows.iter().find(|r| !r.score.is_finite()) {
        return Err(ReportError::Invalid(format!(
            "{}: score of {:?} is {}, which JSON cannot hold",
            path.display(),
            r.id,
            r.score
        )));
    }
    let mut bytes = serde_json::to_vec_pretty(rows)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// One setting of the robustness study: which modalities were present, which corruption at
/// which level, and the metrics obtained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RobustnessRow {
    /// Modalities present at test time, e.g. `audio+video`, `video`, `audio`.
    pub modality_set: String,
    /// Corruption kind (`none` for clean data, `noise`, `blur`, `audio_snr`, ...).
    pub corruption: String,
    /// Corruption level in the kind's own unit (0 for `none`; e.g. a noise sigma, a blur
    /// radius in pixels, an SNR in dB).
    pub level: f64,
    /// Metrics in that setting.
    pub report: BinaryReport,
}

/// A metric of a [`BinaryReport`] to plot or sort by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RobustnessMetric {
    /// ROC AUC.
    Auc,
    /// Average precision (scikit-learn, step-wise).
    Ap,
    /// Trapezoidal area under the PR curve.
    Aupr,
    /// Accuracy at the report's threshold.
    Accuracy,
    /// F1 at the report's threshold.
    F1,
    /// Equal error rate.
    Eer,
    /// FPR at 95 % TPR.
    FprAt95Tpr,
}

impl RobustnessMetric {
    /// The value in `report`, `None` when undefined (one class only).
    pub fn value(self, report: &BinaryReport) -> Option<f64> {
        match self {
            RobustnessMetric::Auc => report.auc,
            RobustnessMetric::Ap => report.ap,
            RobustnessMetric::Aupr => report.aupr,
            RobustnessMetric::Accuracy => Some(report.accuracy),
            RobustnessMetric::F1 => Some(report.f1),
            RobustnessMetric::Eer => report.eer,
            RobustnessMetric::FprAt95Tpr => report.fpr_at_95_tpr,
        }
    }

    /// Axis / column label.
    pub fn label(self) -> &'static str {
        match self {
            RobustnessMetric::Auc => "AUC",
            RobustnessMetric::Ap => "AP",
            RobustnessMetric::Aupr => "AUPR",
            RobustnessMetric::Accuracy => "Accuracy",
            RobustnessMetric::F1 => "F1",
            RobustnessMetric::Eer => "EER",
            RobustnessMetric::FprAt95Tpr => "FPR@95%TPR",
        }
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        _ => "–".to_string(),
    }
}

/// `|`-escaped cell text for markdown.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The robustness table in GitHub markdown, one row per setting in the given order:
/// `| modalities | corruption | level | n | AUC | AP | AUPR | ACC | F1 | EER | FPR@95%TPR |`.
/// Metrics have 4 decimals; undefined ones (one class) show `–`.
pub fn robustness_markdown(rows: &[RobustnessRow]) -> String {
    let mut out = String::from(
        "| modalities | corruption | level | n | AUC | AP | AUPR | ACC | F1 | EER | FPR@95%TPR |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let m = &r.report;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.4} | {:.4} | {} | {} |\n",
            md_cell(&r.modality_set),
            md_cell(&r.corruption),
            r.level,
            m.n,
            fmt_opt(m.auc),
            fmt_opt(m.ap),
            fmt_opt(m.aupr),
            m.accuracy,
            m.f1,
            fmt_opt(m.eer),
            fmt_opt(m.fpr_at_95_tpr),
        ));
    }
    out
}

/// Write [`robustness_markdown`] to `path`.
///
/// # Errors
/// [`ReportError::Io`].
pub fn write_robustness_markdown(path: &Path, rows: &[RobustnessRow]) -> Result<()> {
    write_atomic(path, robustness_markdown(rows).as_bytes())
}

/// Flat CSV form of a robustness row (undefined metrics are empty cells).
#[derive(Serialize)]
struct RobustnessCsvRow<'a> {
    modality_set: &'a str,
    corruption: &'a str,
    level: f64,
    n: usize,
    n_positive: usize,
    threshold: f64,
    auc: Option<f64>,
    ap: Option<f64>,
    aupr: Option<f64>,
    accuracy: f64,
    precision: f64,
    recall: f64,
    f1: f64,
    eer: Option<f64>,
    fpr_at_95_tpr: Option<f64>,
    tn: u64,
    fp: u64,
    #[serde(rename = "fn")]
    fn_: u64,
    tp: u64,
}

/// Write the robustness rows as CSV (one line per setting, every metric a column, the
/// confusion matrix as `tn, fp, fn, tp`; undefined metrics are empty cells).
///
/// # Errors
/// [`ReportError::Csv`], [`ReportError::Io`].
pub fn write_robustness_csv(path: &Path, rows: &[RobustnessRow]) -> Result<()> {
    let flat: Vec<RobustnessCsvRow<'_>> = rows
        .iter()
        .map(|r| {
            let m = &r.report;
            RobustnessCsvRow {
                modality_set: &r.modality_set,
                corruption: &r.corruption,
                level: r.level,
                n: m.n,
                n_positive: m.n_positive,
                threshold: m.threshold,
                auc: m.auc,
                ap: m.ap,
                aupr: m.aupr,
                accuracy: m.accuracy,
                precision: m.precision,
                recall: m.recall,
                f1: m.f1,
                eer: m.eer,
                fpr_at_95_tpr: m.fpr_at_95_tpr,
                tn: m.confusion.tn,
                fp: m.confusion.fp,
                fn_: m.confusion.fn_,
                tp: m.confusion.tp,
            }
        })
        .collect();
    let header = [
        "modality_set",
        "corruption",
        "level",
        "n",
        "n_positive",
        "threshold",
        "auc",
        "ap",
        "aupr",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "eer",
        "fpr_at_95_tpr",
        "tn",
        "fp",
        "fn",
        "tp",
    ];
    write_atomic(path, &csv_bytes(&flat, &header)?)
}

/// Write the robustness rows as a pretty-printed JSON array of [`RobustnessRow`].
///
/// # Errors
/// [`ReportError::Invalid`] for a non-finite level or threshold (serde_json would silently
/// write `null`, which does not read back), [`ReportError::Json`], [`ReportError::Io`].
pub fn write_robustness_json(path: &Path, rows: &[RobustnessRow]) -> Result<()> {
    if let Some(r) = rows
        .iter()
        .find(|r| !(r.level.is_finite() && r.report.threshold.is_finite()))
    {
        return Err(ReportError::Invalid(format!(
            "{}: row {}/{} has level {} and threshold {}, which JSON cannot hold",
            path.display(),
            r.modality_set,
            r.corruption,
            r.level,
            r.report.threshold
        )));
    }
    let mut bytes = serde_json::to_vec_pretty(rows)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}
