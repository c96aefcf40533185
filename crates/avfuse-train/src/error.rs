//! The error type of avfuse-train.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, training or evaluating.
///
/// Messages are one line and name the file, key or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration problem; the message names the key (`training.lr = -1: must be > 0`).
    #[error("{0}")]
    Config(String),
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint that cannot be read or does not fit the model.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A dataset problem (missing split, inconsistent shapes).
    #[error(transparent)]
    Media(#[from] avfuse_media::MediaError),
    /// A dataset that does not fit the configuration.
    #[error("dataset {path}: {detail}")]
    Data {
        /// The split directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The model configuration is invalid.
    #[error(transparent)]
    Model(#[from] avfuse_models::ModelError),
    /// Metrics could not be computed.
    #[error("metrics: {0}")]
    Metric(#[from] avfuse_metrics::MetricError),
    /// A report (plot, table, TensorBoard event file) could not be written.
    #[error("report: {0}")]
    Report(#[from] avfuse_report::ReportError),
    /// A gradient became NaN or infinite; names the module.
    #[error(
        "training diverged at epoch {epoch}, step {step}: the gradient norm of {module} is {norm}"
    )]
    GradientNotFinite {
        /// Epoch (1-based).
        epoch: usize,
        /// Global optimiser step.
        step: usize,
        /// The module, e.g. `video_encoder`.
        module: String,
        /// Its gradient's L2 norm.
        norm: f64,
    },
    /// The loss became NaN or infinite.
    #[error("training diverged at epoch {epoch}, step {step}: loss is {loss}")]
    Diverged {
        /// Epoch (1-based).
        epoch: usize,
        /// Global optimiser step.
        step: usize,
        /// The loss value.
        loss: f64,
    },
    /// The requested device is not available in this build or on this machine.
    #[error("{0}")]
    Device(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
