//! `avfuse-serve`: inference for avfuse checkpoints, offline and over HTTP.
//!
//! - [`engine`]: [`Inference`] loads a checkpoint once (model on the CPU backend by
//!   default) and predicts on video files: the preprocessing that made the training cache,
//!   window by window, then the model with both modalities and with each alone;
//! - [`preprocess`]: which preprocessing settings reproduce a checkpoint's data layout;
//! - [`batch`]: many files in parallel to JSON Lines (`avfuse predict`);
//! - [`server`]: the HTTP service (`avfuse serve`: axum, bounded queue, limits, graceful
//!   shutdown) and [`openapi`], its OpenAPI document;
//! - [`config`]: the service's settings (`serve` section of a YAML file);
//! - [`testing`]: randomly initialised checkpoints of a chosen shape, for tests and
//!   benchmarks;
//! - [`error`], the error type [`ServeError`].
//!
//! Decoding video needs the `ffmpeg` feature ([`FFMPEG`]); without it everything loads and
//! the server answers every endpoint, but predictions fail with [`ServeError::NoFfmpeg`].

pub mod batch;
pub mod config;
pub mod engine;
pub mod error;
pub mod openapi;
pub mod preprocess;
pub mod server;
pub mod testing;

pub use config::ServeConfig;
pub use engine::{EngineOptions, Inference, MediaLimits, Prediction};
pub use error::{Result, ServeError};

/// Whether this build decodes video (the `ffmpeg` feature).
pub const FFMPEG: bool = cfg!(feature = "ffmpeg");

#[cfg(test)]
mod tests {
    #[test]
    fn the_engine_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Inference>();
    }
}
