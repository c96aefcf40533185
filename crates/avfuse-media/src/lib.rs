//! `avfuse-media`: everything between media and tensors, free of Burn.
//!
//! - [`mel`]: log-mel spectrograms equal to librosa's within 1e-3 dB;
//! - [`synth`]: synthetic audio-visual deepfake clips where fusion matters;
//! - [`cache`]: the pre-extracted shard format (safetensors shards + index + manifest);
//! - [`io`]: atomic (crash-safe) file writes;
//! - [`error`]: [`MediaError`].
//!
//! All buffers are plain `Vec`s with documented row-major shapes.

pub mod cache;
pub mod error;
pub mod io;
pub mod mel;
pub mod synth;

pub use error::MediaError;
