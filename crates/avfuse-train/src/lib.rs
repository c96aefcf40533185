//! Configuration, datasets, the trainer, checkpoints, metrics and reports for avfuse.
//!
//! Data flows one way: [`data::Dataset`] (pre-extracted cache) -> batches
//! ([`avfuse_models::AvInput`]) -> [`avfuse_models::AvModel`] -> loss / metrics
//! ([`avfuse_metrics`]) -> checkpoints and reports. The CLI in the `avfuse` binary is a thin
//! layer over [`trainer::train`] and [`eval::evaluate`].

pub mod av_digits;
pub mod checkpoint;
pub mod config;
pub mod corrupt;
pub mod coverage;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod kernel_cache;
pub mod optim;
pub mod predict;
pub mod schedule;
pub mod trainer;

pub use config::Config;
pub use device::DeviceSpec;
pub use error::{Result, TrainError};
pub use eval::{EvalOptions, EvalReport, evaluate};
pub use trainer::{TrainOptions, TrainOutcome, train};
