//! `avfuse-media`: everything between media and tensors, free of Burn.
//!
//! - [`mel`] computes log-mel spectrograms equal to librosa's within 1e-3 dB;
//! - [`synth`] generates synthetic audio-visual deepfake clips where fusion matters;
//! - [`cache`] reads and writes the pre-extracted shard format (safetensors shards + index + manifest);
//! - [`io`] does atomic (crash-safe) file writes;
//! - [`error`] defines [`MediaError`], re-exported here.
//!
//! All buffers are plain `Vec`s with documented row-major shapes.

pub mod cache;
pub mod error;
pub mod io;
pub mod mel;
pub mod synth;

pub use error::MediaError;
