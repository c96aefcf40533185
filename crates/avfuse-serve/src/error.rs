//! The crate's error type.
//!
//! Every variant is one line naming the file, key or limit at fault. [`ServeError::code`]
//! gives a stable machine-readable name (the `error` field of the HTTP service's JSON
//! errors and of `avfuse predict`'s failure lines); the HTTP status of each is chosen by
//! [`crate::server`].

use std::path::PathBuf;

use avfuse_train::TrainError;

/// Message of [`ServeError::NoFfmpeg`]: how to get a build that decodes video.
pub const NO_FFMPEG: &str = "this avfuse was built without FFmpeg: rebuild with `cargo build \
     --release --features ffmpeg` (needs FFmpeg's development packages; on Debian/Ubuntu: \
     apt-get install libavformat-dev libavcodec-dev libswscale-dev libswresample-dev \
     pkg-config clang)";

/// Everything that can go wrong while loading a model or predicting on a file.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Video decoding was not compiled in (feature `ffmpeg`).
    #[error("{}", NO_FFMPEG)]
    NoFfmpeg,
    /// The checkpoint cannot be read or does not fit its configured model.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// An option or limit is invalid; the message names it.
    #[error("{0}")]
    Config(String),
    /// The checkpoint's data layout cannot be produced from a video with the preprocessing
    /// settings at hand.
    #[error("checkpoint {path}: {detail}")]
    Layout {
        /// The checkpoint file.
        path: PathBuf,
        /// What does not match.
        detail: String,
    },
    /// A file that could not be read (missing, unreadable).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable video: not a media file, corrupt or truncated.
    #[error("{}: {detail}", path.display())]
    InvalidMedia {
        /// The file.
        path: PathBuf,
        /// FFmpeg's or the decoder's complaint.
        detail: String,
    },
    /// The file is a media file without a video stream (e.g. audio only).
    #[error("{}: no video stream (audio-only or data file)", path.display())]
    NoVideoStream {
        /// The file.
        path: PathBuf,
    },
    /// The video stream has no frame to decode.
    #[error("{}: the video stream has no frames", path.display())]
    NoFrames {
        /// The file.
        path: PathBuf,
    },
    /// The clip is longer than the configured maximum.
    #[error("{}: clip lasts {duration_s:.2} s, more than the limit of {max_s} s", path.display())]
    TooLong {
        /// The file.
        path: PathBuf,
        /// Its duration in seconds (from the stream header).
        duration_s: f64,
        /// The limit in seconds.
        max_s: f64,
    },
    /// The frames are larger than the configured maximum (checked on the stream header,
    /// before anything is decoded).
    #[error(
        "{}: frames of {width}x{height} exceed the limit ({max_pixels} pixels, {max_side} px a side)",
        path.display()
    )]
    FrameTooLarge {
        /// The file.
        path: PathBuf,
        /// Frame width in pixels.
        width: u32,
        /// Frame height in pixels.
        height: u32,
        /// Limit on `width * height`.
        max_pixels: u64,
        /// Limit on either side.
        max_side: u32,
    },
    /// Nothing the model can use: e.g. an audio-only model and a clip without audio.
    #[error("{}: {detail}", path.display())]
    NoUsableModality {
        /// The file.
        path: PathBuf,
        /// Which modality is missing.
        detail: String,
    },
    /// The caller gave up (timeout, disconnect) and the work was stopped.
    #[error("cancelled")]
    Cancelled,
    /// The model output could not be read back from the device.
    #[error("model: {0}")]
    Model(String),
}

impl ServeError {
    /// Stable machine-readable name of the error kind.
    pub fn code(&self) -> &'static str {
        match self {
            ServeError::NoFfmpeg => "ffmpeg_unavailable",
            ServeError::Train(_) => "checkpoint",
            ServeError::Config(_) => "config",
            ServeError::Layout { .. } => "layout",
            ServeError::Io { .. } => "io",
            ServeError::InvalidMedia { .. } => "invalid_media",
            ServeError::NoVideoStream { .. } => "no_video_stream",
            ServeError::NoFrames { .. } => "no_frames",
            ServeError::TooLong { .. } => "clip_too_long",
            ServeError::FrameTooLarge { .. } => "frame_too_large",
            ServeError::NoUsableModality { .. } => "no_usable_modality",
            ServeError::Cancelled => "cancelled",
            ServeError::Model(_) => "model",
        }
    }

    /// True when the input file is at fault (a client error), false for a problem of the
    /// service itself.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            ServeError::InvalidMedia { .. }
                | ServeError::NoVideoStream { .. }
                | ServeError::NoFrames { .. }
                | ServeError::TooLong { .. }
                | ServeError::FrameTooLarge { .. }
                | ServeError::NoUsableModality { .. }
        )
    }
}

/// Result alias for this crate.
pub type Result<T, E = ServeError> = std::result::Result<T, E>;
