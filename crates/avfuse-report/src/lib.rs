//! Reports for avfuse, free of Burn and of system libraries:
//!
//! - [`plot`]: PNG plots drawn with `plotters` (ROC curves, precision-recall curves,
//!   robustness curves, training curves). Text is rendered with `ab_glyph` from an embedded
//!   DejaVu Sans, so no fontconfig or freetype is needed; PNGs are encoded with `png`.
//! - [`tfevents`]: a TensorBoard event-file writer (scalars) and reader.
//! - [`tables`]: per-sample / per-video predictions as CSV and JSON, and the robustness table
//!   (markdown, CSV, JSON).
//!
//! Every report file is written atomically ([`write_atomic`]): a temporary file in the same
//! directory, renamed over the target, so a crash never leaves a half-written report. Event
//! files are the exception by design: TensorBoard reads them while they grow, so records are
//! appended (each record with one `write_all`).

use std::io::Write;
use std::path::{Path, PathBuf};

pub mod plot;
pub mod tables;
pub mod tfevents;

pub use plot::{
    PlotOptions, PrSeries, RocSeries, TrainingSeries, plot_pr, plot_robustness, plot_roc,
    plot_training_curves, training_series_from_jsonl,
};
pub use tables::{
    PredictionRow, RobustnessMetric, RobustnessRow, robustness_markdown, sample_rows, video_rows,
    write_predictions_csv, write_predictions_json, write_robustness_csv, write_robustness_json,
    write_robustness_markdown,
};
pub use tfevents::{Event, EventWriter, ScalarValue, read_events};

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Input that cannot be plotted or tabulated (empty series, mismatched lengths, ...).
    #[error("{0}")]
    Invalid(String),
    /// The plotting library failed.
    #[error("plot: {0}")]
    Plot(String),
    /// PNG encoding failed.
    #[error("png: {0}")]
    Png(#[from] png::EncodingError),
    /// CSV encoding failed.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    /// JSON encoding or decoding failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A metric could not be computed.
    #[error("metrics: {0}")]
    Metric(#[from] avfuse_metrics::MetricError),
    /// A malformed TensorBoard event file.
    #[error("event file {path}: {detail}")]
    Event {
        /// The event file.
        path: PathBuf,
        /// What is wrong, with the byte offset.
        detail: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ReportError>;

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> ReportError {
    ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same directory (created if
/// missing), flushed and synced, then renamed over `path`. Readers see the old file or the
/// new one, never a partial write.
///
/// # Errors
/// [`ReportError::Io`] naming `path` (or its directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&dir)
        .map_err(|e| io_err(&dir, e))?;
    tmp.write_all(bytes).map_err(|e| io_err(path, e))?;
    tmp.as_file().sync_all().map_err(|e| io_err(path, e))?;
    tmp.persist(path).map_err(|e| io_err(path, e.error))?;
    tracing::debug!(path = %path.display(), bytes = bytes.len(), "wrote report file");
    Ok(())
}
