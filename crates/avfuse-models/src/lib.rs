//! Encoders, fusion and heads for avfuse multimodal classifiers, on Burn.
//!
//! Every layer follows Burn's `Config` + `Module` + `init(device)` pattern. The flagship
//! network is [`AvModel`]: a per-frame CNN over the video frames, a CNN over the log-mel
//! spectrogram, per-time-step concat fusion and an MLP head producing one logit per clip.
//! Modalities are indexed in the fixed order of [`Modality`]; the `[B, M]` presence mask
//! uses the same order.

pub mod audio_resnet;
pub mod av;
pub mod efficientnet;
pub mod encoders;
pub mod error;
pub mod fusion;
pub mod head;
pub mod resnet;
pub mod temporal;
pub mod weights;

pub use av::{AvInput, AvModel, AvModelConfig, Blanking, run_on_rows};
pub use encoders::{ConvBnRelu, FrameCnn, FrameCnnConfig, MelCnn, MelCnnConfig};
pub use error::ModelError;

/// The modalities of the audio-visual model, in presence-mask column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Modality {
    /// Video frames (column 0 of the presence mask).
    Video = 0,
    /// Audio log-mel (column 1 of the presence mask).
    Audio = 1,
}

impl Modality {
    /// All modalities in column order.
    pub const ALL: [Modality; 2] = [Modality::Video, Modality::Audio];

    /// Lower-case name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Video => "video",
            Modality::Audio => "audio",
        }
    }
}
