//! Randomly initialised checkpoints of a chosen shape, for tests and benchmarks of the
//! serving path (their probabilities are meaningless; their shapes, preprocessing and
//! cost are real).

use avfuse_train::checkpoint::{Checkpoint, CheckpointMeta};
use avfuse_train::config::Config;
use avfuse_train::data::{Layout, Normalizer};
use avfuse_train::schedule::EarlyStopping;
use avfuse_train::trainer::BURN_VERSION;
use burn::module::Module;
use burn::tensor::Device;

use crate::error::{Result, ServeError};

/// Shapes of a random checkpoint. The layout is what `avfuse prepare`'s defaults give for
/// `frames` frames of `image_size` px at 25 fps: `1 + 4 * frames` mel frames of `n_mels`
/// bands, 4 mel frames per video frame.
#[derive(Clone, Debug, PartialEq)]
pub struct RandomCheckpoint {
    /// Frames per window, `T`.
    pub frames: usize,
    /// Crop side, pixels (a multiple of 4, >= 16).
    pub image_size: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Conv channels of the frame CNN.
    pub video_channels: Vec<usize>,
    /// Conv channels of the mel CNN (at least 2 layers: 4 mel frames per step).
    pub audio_channels: Vec<usize>,
    /// Embedding size of each encoder.
    pub embed_dim: usize,
    /// Width of the fused representation.
    pub fusion_dim: usize,
    /// Hidden width of the head.
    pub head_hidden: usize,
    /// Build the video branch.
    pub video: bool,
    /// Build the audio branch.
    pub audio: bool,
    /// Seed of Burn's generator before the weights are drawn.
    pub seed: u64,
    /// `dataset.classes` of a multi-class checkpoint (`None`: binary real/fake).
    pub classes: Option<Vec<String>>,
}

impl RandomCheckpoint {
    /// A tiny model (channels `[4, 8]`, embeddings 8) for `frames` frames of `image_size`
    /// px and 64 mel bands.
    pub fn tiny(frames: usize, image_size: usize) -> Self {
        Self {
            frames,
            image_size,
            n_mels: 64,
            video_channels: vec![4, 8],
            audio_channels: vec![4, 8],
            embed_dim: 8,
            fusion_dim: 8,
            head_hidden: 8,
            video: true,
            audio: true,
            seed: 7,
            classes: None,
        }
    }

    /// The data layout of the checkpoint.
    pub fn layout(&self) -> Layout {
        Layout {
            frames: self.frames,
            image_size: self.image_size,
            n_mels: self.n_mels,
            mel_frames: 1 + 4 * self.frames,
            mel_frames_per_step: 4,
        }
    }

    /// The configuration of the checkpoint (defaults elsewhere).
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.dataset.synth.frames = self.frames;
        c.dataset.synth.image_size = self.image_size;
        c.model.video.channels = self.video_channels.clone();
        c.model.video.embed_dim = self.embed_dim;
        c.model.video.enabled = self.video;
        c.model.audio.channels = self.audio_channels.clone();
        c.model.audio.embed_dim = self.embed_dim;
        c.model.audio.enabled = self.audio;
        c.fusion.dim = self.fusion_dim;
        c.model.head.hidden = vec![self.head_hidden];
        c.dataset.classes = self.classes.clone();
        c
    }

    /// Initialises the model on the CPU and packs it as a checkpoint (no optimiser state).
    pub fn build(&self) -> Result<Checkpoint> {
        let config = self.config();
        config.validate()?;
        let device = Device::flex();
        device.seed(self.seed);
        let model = config
            .model_config()
            .init(&device)
            .map_err(|e| ServeError::Config(e.to_string()))?;
        let bytes = model
            .into_record()
            .into_bytes()
            .map_err(|e| ServeError::Model(format!("cannot serialise the weights: {e}")))?;
        Ok(Checkpoint {
            meta: CheckpointMeta {
                avfuse_version: env!("CARGO_PKG_VERSION").into(),
                burn_version: BURN_VERSION.into(),
                layout: self.layout(),
                normalizer: Normalizer {
                    mel_mean: -40.0,
                    mel_std: 20.0,
                },
                labels: config.class_names(),
                epoch: 0,
                step: 0,
                early_stopping: EarlyStopping::new(true, 3, 1e-3),
                val_metrics: serde_json::json!({"note": "randomly initialised, untrained"}),
                train_seconds: 0.0,
                plateau: None,
                config,
            },
            model: bytes.to_vec(),
            optimizer: Vec::new(),
        })
    }
}
