//! `avfuse-media`: everything between media and tensors, free of Burn.
//!
//! - [`mel`] computes log-mel spectrograms equal to librosa's within 1e-3 dB;
//! - [`synth`] generates synthetic audio-visual deepfake clips where fusion matters;
//! - [`sampling`] chooses which video frames to take (uniform, random, start-at);
//! - [`decode`] (feature `ffmpeg`) decodes files: sampled RGB frames and mono 16 kHz audio
//!   aligned with them;
//! - [`faces`] detects faces offline (a Rust Viola-Jones detector with OpenCV's bundled
//!   frontal-face cascade), tracks them between detections and crops them;
//! - [`image_ops`] resizes regions, converts to grey and between layouts;
//! - [`augment`] seeded augmentation of frames, audio and mel;
//! - [`dataset`] lists the clips of a dataset (directory tree or manifest) and splits the
//!   list into parts;
//! - [`prepare`] (feature `ffmpeg`) pre-extracts a dataset into the shard cache, in
//!   parallel and resumably;
//! - [`silence`] measures leading silence (a known dataset shortcut) and reports it by
//!   label;
//! - [`cache`] reads and writes the pre-extracted shard format (safetensors shards + index + manifest);
//! - [`io`] does atomic (crash-safe) file writes;
//! - [`error`] defines [`MediaError`], re-exported here.
//!
//! All buffers are plain `Vec`s with documented row-major shapes.

pub mod augment;
pub mod av_digits;
pub mod cache;
pub mod dataset;
#[cfg(feature = "ffmpeg")]
pub mod decode;
pub mod error;
pub mod faces;
pub mod image_ops;
pub mod io;
pub mod mel;
#[cfg(feature = "ffmpeg")]
pub mod prepare;
pub mod sampling;
pub mod silence;
pub mod synth;

pub use error::MediaError;
