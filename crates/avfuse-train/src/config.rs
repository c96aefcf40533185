//! The YAML configuration: sections `dataset`, `model`, `fusion`, `training`, `evaluation`,
//! `logging`, with `--set key=value` overrides.
//!
//! Loading is strict: an unknown key anywhere is an error naming its full path
//! (`fusion.modality_dropout_probb: unknown field ...`), and every value is range-checked with
//! a message naming the key and the allowed range
//! (`fusion.modality_dropout_prob = 1.5: must be in [0, 1]`). Keys left out take the defaults
//! documented in `configs/quickstart.yaml`.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use avfuse_media::augment::AugmentConfig;
use avfuse_models::audio_resnet::AudioResNetConfig;
use avfuse_models::av::{AudioEncoderKind, VideoBackbone};
use avfuse_models::head::ActivationKind;
use avfuse_models::temporal::{PositionKind, TemporalEncoderConfig, TemporalKind};
use avfuse_models::{AvModelConfig, FrameCnnConfig, MelCnnConfig};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::error::{Result, TrainError};

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the data is and how synthetic data is made.
    pub dataset: DatasetConfig,
    /// Encoders and head.
    pub model: ModelConfig,
    /// How modalities are combined and regularised.
    pub fusion: FusionConfig,
    /// Optimiser, schedule, early stopping.
    pub training: TrainingConfig,
    /// Evaluation settings.
    pub evaluation: EvaluationConfig,
    /// Logs and progress display.
    pub logging: LoggingConfig,
}

/// `dataset` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetConfig {
    /// Directory holding one pre-extracted cache per split (`<root>/<split>/index.json`).
    pub root: PathBuf,
    /// Split used for training.
    pub train_split: String,
    /// Split used for model selection and early stopping.
    pub val_split: String,
    /// Split used for the final test report.
    pub test_split: String,
    /// Synthetic data (`avfuse synth`, `avfuse quickstart`).
    pub synth: SynthConfig,
    /// Training-time augmentation of the training split (off when absent; `augment: {}`
    /// turns it on with the defaults of [`AugmentConfig`]). Seeded per epoch and clip from
    /// `training.seed`, so a resumed run sees the same augmented clips. Video: flip, random
    /// resized crop, colour jitter, blur, pixel noise, JPEG compression; audio: noise at an
    /// SNR and pitch shift on the cached waveform (log-mel recomputed; skipped with a warning
    /// for caches that store no waveform), gain and SpecAugment masks. Never applied to
    /// validation or test.
    pub augment: Option<AugmentConfig>,
    /// Multi-class training: the class names, a clip's class being the position of its
    /// manifest `kind` (`meta.json`'s `kind`, the synthetic kinds `real`, `desync`,
    /// `visual_manipulation`, `audio_swap`) in this list. The first class is the real one:
    /// every clip of label 0 must have that kind and no clip of label 1 may. At least three
    /// names, unique. Absent (the default): binary real/fake classification from `label`.
    /// With classes, the head has one logit per class (softmax cross-entropy), the reported
    /// fake probability is `1 - P(classes[0])`, and accuracy and F1 are the multi-class
    /// accuracy and macro F1.
    pub classes: Option<Vec<String>>,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("data"),
            train_split: "train".into(),
            val_split: "val".into(),
            test_split: "test".into(),
            synth: SynthConfig::default(),
            augment: None,
            classes: None,
        }
    }
}

/// `dataset.synth` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Clips in the train split.
    pub train_clips: usize,
    /// Clips in the val split.
    pub val_clips: usize,
    /// Clips in the test split.
    pub test_clips: usize,
    /// Dataset seed: the same seed gives byte-identical files.
    pub seed: u64,
    /// Video frames per clip (25 fps).
    pub frames: usize,
    /// Frame side in pixels (square RGB frames).
    pub image_size: usize,
    /// Fraction of fake clips, split equally between the three fake kinds.
    pub fake_fraction: f32,
    /// Clips per safetensors shard.
    pub shard_size: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            train_clips: 1600,
            val_clips: 400,
            test_clips: 600,
            seed: 7,
            frames: 16,
            image_size: 64,
            fake_fraction: 0.5,
            shard_size: 256,
        }
    }
}

/// `model` section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Video branch.
    pub video: VideoConfig,
    /// Audio branch.
    pub audio: AudioConfig,
    /// Temporal encoder over each modality's per-step features.
    pub temporal: TemporalConfig,
    /// Classification head.
    pub head: HeadConfig,
}

/// `model.video` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VideoConfig {
    /// Build and use the video branch.
    pub enabled: bool,
    /// Per-frame encoder: `cnn` (the small CNN below), `resnet18`, `resnet34`, `resnet50`
    /// (torchvision layout) or `efficientnet_b0` (timm layout).
    pub backbone: VideoBackbone,
    /// ResNet / EfficientNet: a torchvision/timm state dict (`.safetensors`, `.pth`) to start
    /// from (its classifier is ignored); `null`: random initialisation.
    pub pretrained: Option<PathBuf>,
    /// `cnn`: conv channels per layer.
    pub channels: Vec<usize>,
    /// `cnn`: embedding size per frame.
    pub embed_dim: usize,
    /// ResNet: stem / `layer1` width (64 = torchvision, needed by pretrained weights).
    pub base_channels: usize,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            backbone: VideoBackbone::Cnn,
            pretrained: None,
            channels: vec![16, 32, 32],
            embed_dim: 32,
            base_channels: 64,
        }
    }
}

/// `model.audio` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Build and use the audio branch.
    pub enabled: bool,
    /// Log-mel encoder: `cnn` (small CNN) or `resnet` (ResNet-style 2-d CNN).
    pub encoder: AudioEncoderKind,
    /// `cnn`: conv channels per layer; `resnet`: channels per stage (the stem has the first
    /// stage's).
    pub channels: Vec<usize>,
    /// Embedding size per time step.
    pub embed_dim: usize,
    /// `resnet`: BasicBlocks per stage, >= 1.
    pub blocks: usize,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            encoder: AudioEncoderKind::Cnn,
            channels: vec![16, 32, 32],
            embed_dim: 32,
            blocks: 1,
        }
    }
}

/// `model.temporal.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemporalChoice {
    /// No temporal encoder: per-step features as they are, clip embedding = temporal mean.
    None,
    /// Masked temporal mean (no parameters).
    AvgPool,
    /// Residual temporal convolutions.
    Tconv,
    /// Pre-norm Transformer encoder.
    Transformer,
}

/// `model.temporal` section (one encoder per modality, with its own weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemporalConfig {
    /// `none`, `avg_pool`, `tconv` or `transformer`.
    pub kind: TemporalChoice,
    /// `tconv` / `transformer`: output width.
    pub dim: usize,
    /// `tconv`: blocks; `transformer`: encoder layers.
    pub layers: usize,
    /// `tconv`: odd temporal kernel size.
    pub kernel_size: usize,
    /// `transformer`: attention heads (divide `dim`).
    pub heads: usize,
    /// `transformer`: feed-forward hidden width.
    pub ff_dim: usize,
    /// Dropout in training, in [0, 1).
    pub dropout: f64,
    /// `relu` or `gelu`; `null`: relu for tconv, gelu for transformer.
    pub activation: Option<ActivationKind>,
    /// `transformer`: `sinusoidal`, `learned` or `none`.
    pub positions: PositionKind,
    /// `transformer` with learned positions: most steps.
    pub max_len: usize,
}

impl Default for TemporalConfig {
    fn default() -> Self {
        Self {
            kind: TemporalChoice::None,
            dim: 128,
            layers: 2,
            kernel_size: 3,
            heads: 4,
            ff_dim: 256,
            dropout: 0.1,
            activation: None,
            positions: PositionKind::Sinusoidal,
            max_len: 512,
        }
    }
}

/// `model.head` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadConfig {
    /// Widths of the MLP head's hidden layers, in order: `hidden: 64` (one layer),
    /// `hidden: [256, 64]` (two), `hidden: []` (a single linear layer). Each >= 1.
    #[serde(deserialize_with = "one_or_many_widths")]
    pub hidden: Vec<usize>,
    /// Dropout before each head layer, in [0, 1).
    pub dropout: f64,
}

/// `model.head.hidden`: one width (an integer, the form configs and checkpoints written
/// before lists were accepted use) or a list of widths.
fn one_or_many_widths<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    struct Widths;
    impl<'de> serde::de::Visitor<'de> for Widths {
        type Value = Vec<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a hidden width (an integer) or a list of widths, e.g. 64 or [256, 64]")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Vec<usize>, E> {
            usize::try_from(v)
                .map(|v| vec![v])
                .map_err(|_| E::custom(format!("hidden width {v} is too large")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Vec<usize>, E> {
            u64::try_from(v)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<usize>, A::Error> {
            let mut out = Vec::new();
            while let Some(w) = seq.next_element::<usize>()? {
                out.push(w);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Widths)
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            hidden: vec![64],
            dropout: 0.2,
        }
    }
}

/// Fusion strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionStrategy {
    /// Clip embeddings plus the per-time-step concatenation ("sync") stream.
    Concat,
    /// Per-modality weights over projected clip embeddings, softmax over present modalities.
    Attention,
    /// Cross-attention between the two modalities' step sequences, masked by presence.
    CrossModal,
}

/// `fusion` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FusionConfig {
    /// How modality embeddings are combined.
    pub strategy: FusionStrategy,
    /// `concat`: width of the per-step sync stream; `attention` / `cross_modal`: the common
    /// width the modalities are projected to.
    pub dim: usize,
    /// `cross_modal`: attention heads (divide `dim`).
    pub heads: usize,
    /// `cross_modal`: cross-attention layers.
    pub layers: usize,
    /// `cross_modal`: feed-forward hidden width.
    pub ff_dim: usize,
    /// `cross_modal`: dropout in training, in [0, 1).
    pub dropout: f64,
    /// Probability that a training sample (`sample` mode) or batch (`batch` mode) loses
    /// modalities (presence 0). Never blanks every modality of a sample. 0 disables it.
    pub modality_dropout_prob: f64,
    /// How modality dropout draws its masks.
    pub modality_dropout: ModalityDropoutConfig,
    /// What the optimiser does to the encoder of a modality absent from every sample of a
    /// batch (its parameters are in the graph, with zero gradient).
    pub inactive_update: InactiveUpdate,
    /// How encoders treat blanked samples in training: `mask` (masked BatchNorm), `compact`
    /// (run encoders on present samples only) or `zero_input` (plain BatchNorm on zeros).
    pub blanking: avfuse_models::Blanking,
    /// How an encoder whose modality is absent from a whole batch stays in the autograd graph
    /// (design 2.4): `none`, `dummy` or `zero_after_encoder`.
    pub coverage: Coverage,
    /// `coverage: dummy`: the factor of the added `sum(param)` terms, finite and >= 0 (0 keeps
    /// the graph without changing any gradient value).
    pub coverage_scale: f64,
}

/// Gradient coverage of inactive encoders (design 2.4).
///
/// Data-parallel training all-reduces every parameter's gradient and fails ("unused
/// parameters") when a rank's batch leaves an encoder out of the graph, e.g. a `compact` batch
/// with no audio at all. Within one process the gradients of such an encoder are exactly zero
/// either way; the modes only decide whether the encoder appears in the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// Nothing added: an encoder skipped by `compact` blanking gets no gradient entry (under
    /// `mask` and `zero_input` every encoder runs on every sample, so it always has one).
    None,
    /// Add `coverage_scale * sum(sum(param))` over the inactive encoders' parameters to the
    /// loss: every parameter gets a gradient entry (equal to `coverage_scale`). With
    /// `inactive_update: pytorch` AdamW then moves them by about `lr` per step (Adam
    /// normalises the tiny gradient away): keep the default `skip` with this mode.
    Dummy,
    /// Every encoder runs on every sample's real input and the features of absent samples
    /// are zeroed after the encoder (AV-HuBERT's `0 * features`): graph-safe, but costs the
    /// blanked samples' compute; with `blanking: zero_input` their inputs also enter the
    /// BatchNorm statistics (AV-HuBERT), with `mask` they do not. Incompatible with `compact`.
    ZeroAfterEncoder,
}

/// The optimiser rule for an inactive modality's parameters (design 2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InactiveUpdate {
    /// No update that step: no weight decay, no moment update (their gradients are removed
    /// before the optimiser step, so they stay bit-identical).
    Skip,
    /// As PyTorch's AdamW would do with a zero gradient: weight decay and moment decay apply.
    Pytorch,
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self {
            strategy: FusionStrategy::Concat,
            dim: 64,
            heads: 4,
            layers: 1,
            ff_dim: 256,
            dropout: 0.1,
            modality_dropout_prob: 0.0,
            modality_dropout: ModalityDropoutConfig::default(),
            inactive_update: InactiveUpdate::Skip,
            blanking: avfuse_models::Blanking::Mask,
            coverage: Coverage::None,
            coverage_scale: 1e-7,
        }
    }
}

/// Granularity of modality dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropModeConfig {
    /// Each sample independently.
    Sample,
    /// One modality for the whole batch (AV-HuBERT).
    Batch,
}

/// `fusion.modality_dropout` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModalityDropoutConfig {
    /// `sample` or `batch`.
    pub mode: DropModeConfig,
    /// Relative chance of each modality (`[video, audio]`) to be the one dropped; `null`:
    /// uniform.
    pub probs: Option<Vec<f64>>,
    /// Epochs over which the probability ramps linearly from 0 to its target (0: none).
    pub ramp_epochs: usize,
    /// `sample` mode: at most this many modalities dropped from one sample (never all).
    pub max_dropped: usize,
    /// Multiply the kept modalities' features by `1 / (1 - p / M)` in training (slp's MMDrop),
    /// so their expected magnitude matches evaluation, where nothing is dropped.
    pub rescale: bool,
}

impl Default for ModalityDropoutConfig {
    fn default() -> Self {
        Self {
            mode: DropModeConfig::Sample,
            probs: None,
            ramp_epochs: 0,
            max_dropped: 1,
            rescale: false,
        }
    }
}

/// Metrics that can drive model selection and early stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelectionMetric {
    /// Validation ROC AUC (higher is better).
    Auc,
    /// Validation average precision (higher is better).
    Ap,
    /// Validation accuracy at the evaluation threshold (higher is better).
    Accuracy,
    /// Validation F1 at the evaluation threshold (higher is better).
    F1,
    /// Validation loss (lower is better).
    Loss,
}

impl SelectionMetric {
    /// True when larger values are better.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, SelectionMetric::Loss)
    }

    /// Name used in logs and metrics files.
    pub fn name(self) -> &'static str {
        match self {
            SelectionMetric::Auc => "auc",
            SelectionMetric::Ap => "ap",
            SelectionMetric::Accuracy => "accuracy",
            SelectionMetric::F1 => "f1",
            SelectionMetric::Loss => "loss",
        }
    }
}

/// `training.early_stopping` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStoppingConfig {
    /// Validation metric that selects the best checkpoint and drives early stopping.
    pub metric: SelectionMetric,
    /// Epochs without an improvement of at least `min_delta` before training stops;
    /// 0 disables early stopping.
    pub patience: usize,
    /// Smallest change of the metric that counts as an improvement (absolute).
    pub min_delta: f64,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        Self {
            metric: SelectionMetric::Auc,
            patience: 3,
            min_delta: 1e-3,
        }
    }
}

/// `training` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Seed for initialisation, shuffling and dropout masks.
    pub seed: u64,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Clips per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Decoupled weight decay (AdamW; PyTorch default 1e-2).
    pub weight_decay: f64,
    /// AdamW beta1.
    pub beta1: f64,
    /// AdamW beta2.
    pub beta2: f64,
    /// AdamW epsilon (PyTorch default 1e-8).
    pub eps: f64,
    /// Linear warm-up length in epochs (fractions allowed), then cosine decay.
    pub warmup_epochs: f64,
    /// Learning rate at the end of the cosine decay (eta_min).
    pub min_lr: f64,
    /// Early stopping and best-checkpoint selection.
    pub early_stopping: EarlyStoppingConfig,
    /// `adamw` (decoupled weight decay, PyTorch's AdamW) or `sgd` (PyTorch's SGD: weight
    /// decay added to the gradient, momentum without dampening).
    pub optimizer: OptimizerKind,
    /// SGD momentum in [0, 1) (0: plain SGD). Ignored by AdamW.
    pub momentum: f64,
    /// SGD Nesterov momentum (needs momentum > 0). Ignored by AdamW.
    pub nesterov: bool,
    /// Global gradient-norm clipping (PyTorch's `clip_grad_norm_`): when the L2 norm of all
    /// gradients together exceeds this, every gradient is scaled by
    /// `max_norm / (norm + 1e-6)`. `null`: no clipping.
    pub grad_clip_norm: Option<f64>,
    /// Batches whose gradients are averaged into one optimiser step (>= 1): the effective
    /// batch is `batch_size * grad_accum_steps`.
    pub grad_accum_steps: usize,
    /// Loss weight of each class `[real, fake]`: the loss is `sum(w_y * l) / sum(w_y)` over
    /// the batch (PyTorch's `CrossEntropyLoss(weight=...)` convention). `null`: unweighted.
    pub class_weights: Option<Vec<f64>>,
    /// Also keep `checkpoints/epoch-NNNN.avfc` every this many epochs (0: only `last` and
    /// `best`).
    pub checkpoint_every: usize,
    /// Learning-rate schedule after the linear warm-up of `warmup_epochs` (which every
    /// schedule starts with).
    pub scheduler: SchedulerKind,
    /// `cosine_restarts`: length of the first cycle in epochs (PyTorch's `T_0`, >= 1).
    pub restart_epochs: u64,
    /// `cosine_restarts`: cycle growth factor (PyTorch's `T_mult`, an integer >= 1).
    pub restart_mult: u64,
    /// `plateau`: PyTorch's `ReduceLROnPlateau` on the validation metric of
    /// `early_stopping.metric` (mode `max` for auc/ap/accuracy/f1, `min` for loss).
    pub plateau: PlateauSettings,
}

/// Learning-rate schedule of a run (all per optimiser step, after the warm-up).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Cosine decay from `lr` to `min_lr` over the rest of the run.
    WarmupCosine,
    /// PyTorch's `CosineAnnealingWarmRestarts(T_0 = restart_epochs, T_mult = restart_mult,
    /// eta_min = min_lr)`, stepped with the fractional epoch at every optimiser step.
    CosineRestarts,
    /// PyTorch's `ReduceLROnPlateau` (`training.plateau`, floor `min_lr`), stepped once per
    /// epoch with the validation metric.
    Plateau,
    /// `lr` throughout.
    Constant,
}

/// `training.plateau` section: PyTorch's `ReduceLROnPlateau` settings (its defaults except
/// `patience`, which is per epoch here and defaults to 2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlateauSettings {
    /// `new_lr = lr * factor`, in (0, 1).
    pub factor: f64,
    /// Epochs without improvement before a reduction.
    pub patience: u64,
    /// Significance threshold of an improvement, >= 0.
    pub threshold: f64,
    /// `rel` (relative to the best) or `abs`.
    pub threshold_mode: crate::schedule::ThresholdMode,
    /// Epochs after a reduction during which no bad epochs are counted.
    pub cooldown: u64,
}

impl Default for PlateauSettings {
    fn default() -> Self {
        Self {
            factor: 0.1,
            patience: 2,
            threshold: 1e-4,
            threshold_mode: crate::schedule::ThresholdMode::Rel,
            cooldown: 0,
        }
    }
}

/// Optimiser of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW with `lr`, `beta1`, `beta2`, `eps`, `weight_decay`.
    Adamw,
    /// SGD with `lr`, `momentum`, `nesterov`, `weight_decay`.
    Sgd,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            epochs: 8,
            batch_size: 16,
            lr: 2e-3,
            weight_decay: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_epochs: 1.0,
            min_lr: 1e-5,
            early_stopping: EarlyStoppingConfig::default(),
            optimizer: OptimizerKind::Adamw,
            momentum: 0.9,
            nesterov: false,
            grad_clip_norm: None,
            grad_accum_steps: 1,
            class_weights: None,
            checkpoint_every: 0,
            scheduler: SchedulerKind::WarmupCosine,
            restart_epochs: 2,
            restart_mult: 1,
            plateau: PlateauSettings::default(),
        }
    }
}

/// `evaluation` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Clips per inference batch.
    pub batch_size: usize,
    /// A clip is predicted fake when its probability is >= threshold.
    pub threshold: f64,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            threshold: 0.5,
        }
    }
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Progress summaries (default).
    Info,
    /// Per-step details.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// `logging` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Log verbosity (`RUST_LOG` overrides it).
    pub level: LogLevel,
    /// Show progress bars (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Write TensorBoard event files to `<run>/tensorboard/` (scalars: losses, validation
    /// metrics, learning rate, per-encoder gradient norms, throughput).
    pub tensorboard: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            progress: true,
            tensorboard: true,
        }
    }
}

fn range_err(key: &str, value: impl Display, expected: &str) -> TrainError {
    TrainError::Config(format!("{key} = {value}: {expected}"))
}

/// `dataset.classes`: at least three unique, non-empty names.
fn validate_classes(classes: &[String]) -> Result<()> {
    let bad = |why: &str| Err(range_err("dataset.classes", format!("{classes:?}"), why));
    if classes.len() < 3 {
        return bad(
            "must list at least three class names (leave it out for binary real/fake \
             classification)",
        );
    }
    if classes.len() > 255 {
        return bad("at most 255 classes (labels are stored as u8)");
    }
    if classes.iter().any(|c| c.trim().is_empty()) {
        return bad("class names must not be empty");
    }
    for (i, c) in classes.iter().enumerate() {
        if classes[..i].contains(c) {
            return bad(&format!("class name {c:?} appears twice"));
        }
    }
    Ok(())
}

/// Range checks of `dataset.augment`, each error naming its key.
fn validate_augment(a: &AugmentConfig) -> Result<()> {
    for (key, p) in [
        ("flip_p", a.flip_p),
        ("crop_p", a.crop_p),
        ("jitter_p", a.jitter_p),
        ("blur_p", a.blur_p),
        ("noise_p", a.noise_p),
        ("jpeg_p", a.jpeg_p),
        ("audio_noise_p", a.audio_noise_p),
        ("pitch_p", a.pitch_p),
        ("shift_p", a.shift_p),
    ] {
        check_unit(&format!("dataset.augment.{key}"), f64::from(p))?;
    }
    let pair = |key: &str, (lo, hi): (f32, f32), ok: bool, expected: &str| {
        if ok && lo.is_finite() && hi.is_finite() && lo <= hi {
            Ok(())
        } else {
            Err(range_err(
                &format!("dataset.augment.{key}"),
                format!("[{lo}, {hi}]"),
                expected,
            ))
        }
    };
    let (lo, hi) = a.crop_scale;
    pair(
        "crop_scale",
        a.crop_scale,
        lo > 0.0 && hi <= 1.0,
        "must be [lo, hi] with 0 < lo <= hi <= 1 (area fractions)",
    )?;
    pair(
        "crop_ratio",
        a.crop_ratio,
        a.crop_ratio.0 > 0.0,
        "must be [lo, hi] with 0 < lo <= hi (aspect ratios)",
    )?;
    pair(
        "blur_sigma",
        a.blur_sigma,
        a.blur_sigma.0 > 0.0 && a.blur_sigma.1 <= 20.0,
        "must be [lo, hi] with 0 < lo <= hi <= 20 (pixels)",
    )?;
    pair(
        "snr_db",
        a.snr_db,
        true,
        "must be [lo, hi] with lo <= hi, finite (dB)",
    )?;
    let (qlo, qhi) = a.jpeg_quality;
    if !(1 <= qlo && qlo <= qhi && qhi <= 100) {
        return Err(range_err(
            "dataset.augment.jpeg_quality",
            format!("[{qlo}, {qhi}]"),
            "must be [lo, hi] with 1 <= lo <= hi <= 100",
        ));
    }
    for (key, v, max) in [
        ("noise_std", a.noise_std, 255.0),
        ("gain_db", a.gain_db, 60.0),
        ("pitch_semitones", a.pitch_semitones, 12.0),
        ("shift_ms", a.shift_ms, 1000.0),
    ] {
        if !(v.is_finite() && (0.0..=max).contains(&v)) {
            return Err(range_err(
                &format!("dataset.augment.{key}"),
                v,
                &format!("must be in [0, {max}]"),
            ));
        }
    }
    Ok(())
}

fn check_unit(key: &str, v: f64) -> Result<()> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(range_err(key, v, "must be in [0, 1]"))
    }
}

fn check_positive(key: &str, v: usize) -> Result<()> {
    if v >= 1 {
        Ok(())
    } else {
        Err(range_err(key, v, "must be >= 1"))
    }
}

impl Config {
    /// Load a config: `file` (or the defaults when `None`), then each `key=value` override.
    /// The result is validated.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let mut tree = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
                let v: Value = serde_yaml::from_str(&text).map_err(|e| {
                    TrainError::Config(format!("{}: invalid YAML: {e}", path.display()))
                })?;
                match v {
                    Value::Null => Value::Mapping(Mapping::new()),
                    Value::Mapping(_) => v,
                    _ => {
                        return Err(TrainError::Config(format!(
                            "{}: the top level must be a mapping of sections",
                            path.display()
                        )));
                    }
                }
            }
            None => Value::Mapping(Mapping::new()),
        };
        for o in overrides {
            apply_override(&mut tree, o)?;
        }
        let source = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "config".into());
        let cfg: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                TrainError::Config(format!("{source}: {inner}"))
            } else {
                TrainError::Config(format!("{source}: {path}: {inner}"))
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range-check every value. Errors name the key and the allowed range.
    pub fn validate(&self) -> Result<()> {
        let s = &self.dataset.synth;
        check_positive("dataset.synth.train_clips", s.train_clips)?;
        check_positive("dataset.synth.val_clips", s.val_clips)?;
        check_positive("dataset.synth.test_clips", s.test_clips)?;
        if !(4..=256).contains(&s.frames) {
            return Err(range_err(
                "dataset.synth.frames",
                s.frames,
                "must be in [4, 256]",
            ));
        }
        if !(16..=512).contains(&s.image_size) || !s.image_size.is_multiple_of(4) {
            return Err(range_err(
                "dataset.synth.image_size",
                s.image_size,
                "must be a multiple of 4 in [16, 512]",
            ));
        }
        check_unit("dataset.synth.fake_fraction", f64::from(s.fake_fraction))?;
        check_positive("dataset.synth.shard_size", s.shard_size)?;
        for (key, split) in [
            ("dataset.train_split", &self.dataset.train_split),
            ("dataset.val_split", &self.dataset.val_split),
            ("dataset.test_split", &self.dataset.test_split),
        ] {
            let ok = !split.is_empty()
                && split
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(range_err(
                    key,
                    format!("{split:?}"),
                    "must be a non-empty name of [A-Za-z0-9_-]",
                ));
            }
        }
        if let Some(classes) = &self.dataset.classes {
            validate_classes(classes)?;
        }
        if let Some(a) = &self.dataset.augment {
            validate_augment(a)?;
        }
        check_unit(
            "fusion.modality_dropout_prob",
            self.fusion.modality_dropout_prob,
        )?;
        let md = &self.fusion.modality_dropout;
        check_positive("fusion.modality_dropout.max_dropped", md.max_dropped)?;
        if let Some(w) = &md.probs {
            let ok = w.len() == 2
                && w.iter().all(|x| x.is_finite() && *x >= 0.0)
                && w.iter().any(|x| *x > 0.0);
            if !ok {
                return Err(range_err(
                    "fusion.modality_dropout.probs",
                    format!("{w:?}"),
                    "must be [video, audio] weights, finite, >= 0, not both 0",
                ));
            }
        }
        let f = &self.fusion;
        if !(f.coverage_scale >= 0.0 && f.coverage_scale.is_finite()) {
            return Err(range_err(
                "fusion.coverage_scale",
                f.coverage_scale,
                "must be a finite number >= 0",
            ));
        }
        if f.coverage == Coverage::ZeroAfterEncoder
            && f.blanking == avfuse_models::Blanking::Compact
        {
            return Err(range_err(
                "fusion.coverage",
                "zero_after_encoder",
                "runs every encoder on every sample, which `fusion.blanking: compact` skips: \
                 use blanking mask or zero_input, or coverage dummy",
            ));
        }
        let t = &self.training;
        check_positive("training.epochs", t.epochs)?;
        check_positive("training.batch_size", t.batch_size)?;
        check_positive("training.grad_accum_steps", t.grad_accum_steps)?;
        if t.restart_epochs < 1 {
            return Err(range_err(
                "training.restart_epochs",
                t.restart_epochs,
                "must be >= 1",
            ));
        }
        if t.restart_mult < 1 {
            return Err(range_err(
                "training.restart_mult",
                t.restart_mult,
                "must be an integer >= 1",
            ));
        }
        let pl = &t.plateau;
        if !(pl.factor > 0.0 && pl.factor < 1.0) {
            return Err(range_err(
                "training.plateau.factor",
                pl.factor,
                "must be in (0, 1)",
            ));
        }
        if !(pl.threshold >= 0.0 && pl.threshold.is_finite()) {
            return Err(range_err(
                "training.plateau.threshold",
                pl.threshold,
                "must be a finite number >= 0",
            ));
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return Err(range_err(
                "training.momentum",
                t.momentum,
                "must be in [0, 1)",
            ));
        }
        if t.nesterov && t.momentum == 0.0 && t.optimizer == OptimizerKind::Sgd {
            return Err(range_err(
                "training.nesterov",
                true,
                "needs training.momentum > 0 (as PyTorch's SGD)",
            ));
        }
        if let Some(c) = t.grad_clip_norm
            && !(c > 0.0 && c.is_finite())
        {
            return Err(range_err(
                "training.grad_clip_norm",
                c,
                "must be a finite number > 0, or null for no clipping",
            ));
        }
        if let Some(w) = &t.class_weights {
            let k = self.class_names().len();
            let ok = w.len() == k && w.iter().all(|x| x.is_finite() && *x > 0.0);
            if !ok {
                return Err(range_err(
                    "training.class_weights",
                    format!("{w:?}"),
                    &format!(
                        "must be {k} weights (one per class of {:?}), finite and > 0, or null",
                        self.class_names()
                    ),
                ));
            }
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(range_err(
                "training.lr",
                t.lr,
                "must be a finite number > 0",
            ));
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return Err(range_err(
                "training.weight_decay",
                t.weight_decay,
                "must be >= 0",
            ));
        }
        for (key, v) in [("training.beta1", t.beta1), ("training.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(range_err(key, v, "must be in [0, 1)"));
            }
        }
        if !(t.eps > 0.0 && t.eps.is_finite()) {
            return Err(range_err(
                "training.eps",
                t.eps,
                "must be a finite number > 0",
            ));
        }
        if !(t.warmup_epochs >= 0.0 && t.warmup_epochs <= t.epochs as f64) {
            return Err(range_err(
                "training.warmup_epochs",
                t.warmup_epochs,
                &format!("must be in [0, training.epochs = {}]", t.epochs),
            ));
        }
        if !(t.min_lr >= 0.0 && t.min_lr <= t.lr) {
            return Err(range_err(
                "training.min_lr",
                t.min_lr,
                &format!("must be in [0, training.lr = {}]", t.lr),
            ));
        }
        if !(t.early_stopping.min_delta >= 0.0 && t.early_stopping.min_delta.is_finite()) {
            return Err(range_err(
                "training.early_stopping.min_delta",
                t.early_stopping.min_delta,
                "must be >= 0",
            ));
        }
        check_positive("evaluation.batch_size", self.evaluation.batch_size)?;
        check_unit("evaluation.threshold", self.evaluation.threshold)?;
        let a = &self.model.audio;
        if a.encoder == AudioEncoderKind::Resnet {
            if a.channels.is_empty() || a.channels.contains(&0) {
                return Err(range_err(
                    "model.audio.channels",
                    format!("{:?}", a.channels),
                    "must be a non-empty list of positive channel counts",
                ));
            }
            check_positive("model.audio.blocks", a.blocks)?;
        }
        self.model_config().validate()?;
        Ok(())
    }

    /// The class names in label order: `dataset.classes`, or `["real", "fake"]` for binary
    /// classification.
    pub fn class_names(&self) -> Vec<String> {
        self.dataset
            .classes
            .clone()
            .unwrap_or_else(|| vec!["real".into(), "fake".into()])
    }

    /// Output logits of the head: 1 for binary classification (a sigmoid), `K` for the `K`
    /// classes of `dataset.classes` (a softmax).
    pub fn num_outputs(&self) -> usize {
        self.dataset.classes.as_ref().map_or(1, Vec::len)
    }

    /// The model configuration these settings describe.
    pub fn model_config(&self) -> AvModelConfig {
        let m = &self.model;
        AvModelConfig::new(
            FrameCnnConfig::new()
                .with_channels(m.video.channels.clone())
                .with_embed_dim(m.video.embed_dim),
            MelCnnConfig::new()
                .with_channels(m.audio.channels.clone())
                .with_embed_dim(m.audio.embed_dim),
        )
        .with_enable_video(m.video.enabled)
        .with_enable_audio(m.audio.enabled)
        .with_fusion_dim(self.fusion.dim)
        .with_head_hidden(m.head.hidden.clone())
        .with_head_dropout(m.head.dropout)
        .with_num_outputs(self.num_outputs())
        .with_video_backbone(m.video.backbone)
        .with_video_base_channels(m.video.base_channels)
        .with_video_pretrained(
            m.video
                .pretrained
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        )
        .with_audio_encoder(m.audio.encoder)
        .with_audio_resnet(
            AudioResNetConfig::new()
                .with_stem_channels(m.audio.channels.first().copied().unwrap_or(0))
                .with_widths(m.audio.channels.clone())
                .with_blocks(vec![m.audio.blocks; m.audio.channels.len()])
                .with_embed_dim(m.audio.embed_dim),
        )
        .with_temporal(self.temporal_config())
        .with_fusion_strategy(match self.fusion.strategy {
            FusionStrategy::Concat => avfuse_models::fusion::FusionStrategy::Concat,
            FusionStrategy::Attention => avfuse_models::fusion::FusionStrategy::Attention,
            FusionStrategy::CrossModal => avfuse_models::fusion::FusionStrategy::CrossModal,
        })
        .with_fusion_heads(self.fusion.heads)
        .with_fusion_layers(self.fusion.layers)
        .with_fusion_ff_dim(self.fusion.ff_dim)
        .with_fusion_dropout(self.fusion.dropout)
    }

    /// `model.temporal` as the models' configuration (`None` for `kind: none`); its
    /// `input_dim` is set per modality by the model.
    fn temporal_config(&self) -> Option<TemporalEncoderConfig> {
        let t = &self.model.temporal;
        let kind = match t.kind {
            TemporalChoice::None => return None,
            TemporalChoice::AvgPool => TemporalKind::AvgPool,
            TemporalChoice::Tconv => TemporalKind::TConv,
            TemporalChoice::Transformer => TemporalKind::Transformer,
        };
        Some(
            TemporalEncoderConfig::new(1)
                .with_kind(kind)
                .with_dim(t.dim)
                .with_layers(t.layers)
                .with_kernel_size(t.kernel_size)
                .with_heads(t.heads)
                .with_ff_dim(t.ff_dim)
                .with_dropout(t.dropout)
                .with_activation(t.activation)
                .with_positions(t.positions)
                .with_max_len(t.max_len),
        )
    }

    /// The configuration as YAML (what checkpoints and run directories record).
    pub fn to_yaml(&self) -> String {
        // Serialising plain structs of numbers, strings and lists cannot fail.
        serde_yaml::to_string(self).unwrap_or_default()
    }
}

/// Apply one `key.path=value` override to the YAML tree. The value is parsed as YAML
/// (`3e-4`, `true`, `[16, 32]`, `auc`); intermediate sections are created as needed, and
/// unknown keys are reported when the tree is deserialised.
fn apply_override(tree: &mut Value, item: &str) -> Result<()> {
    let (key, raw) = item.split_once('=').ok_or_else(|| {
        TrainError::Config(format!(
            "--set {item:?}: expected key=value, e.g. training.lr=3e-4"
        ))
    })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(TrainError::Config(format!(
            "--set {item:?}: empty key segment"
        )));
    }
    let value: Value = serde_yaml::from_str(raw.trim())
        .map_err(|e| TrainError::Config(format!("--set {key}: cannot parse value {raw:?}: {e}")))?;
    let mut node = tree;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = match node {
            Value::Mapping(m) => m,
            other => {
                return Err(TrainError::Config(format!(
                    "--set {key}: {} is a value ({other:?}), not a section",
                    parts[..i].join(".")
                )));
            }
        };
        let k = Value::String((*part).to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map
            .entry(k)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load_str(yaml: &str, sets: &[&str]) -> Result<Config> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(yaml.as_bytes()).unwrap();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Config::load(Some(f.path()), &sets)
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        assert_eq!(Config::load(None, &[]).unwrap(), Config::default());
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(load_str("", &[]).unwrap(), Config::default());
    }

    #[test]
    fn out_of_range_names_key_and_range() {
        let e = load_str("fusion:\n  modality_dropout_prob: 1.5\n", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "fusion.modality_dropout_prob = 1.5: must be in [0, 1]"
        );
        let e = load_str("", &["training.lr=-1"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "training.lr = -1: must be a finite number > 0"
        );
        let e = load_str("", &["training.beta2=1.0"]).unwrap_err();
        assert_eq!(e.to_string(), "training.beta2 = 1: must be in [0, 1)");
        let e = load_str("", &["model.video.channels=[]"]).unwrap_err();
        assert!(
            e.to_string().starts_with("model.video.channels = []"),
            "{e}"
        );
    }

    #[test]
    fn augment_is_off_by_default_and_validated_by_key() {
        assert_eq!(Config::default().dataset.augment, None);
        let c = load_str("dataset:\n  augment: {}\n", &[]).unwrap();
        assert_eq!(c.dataset.augment, Some(AugmentConfig::default()));
        let c = load_str("", &["dataset.augment.flip_p=0.25"]).unwrap();
        let a = c.dataset.augment.unwrap();
        assert_eq!(a.flip_p, 0.25);
        assert_eq!(a.crop_p, AugmentConfig::default().crop_p);
        let e = load_str("", &["dataset.augment.jitter_p=2"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dataset.augment.jitter_p = 2: must be in [0, 1]"
        );
        let e = load_str("dataset:\n  augment:\n    jpeg_quality: [0, 90]\n", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dataset.augment.jpeg_quality = [0, 90]: must be [lo, hi] with 1 <= lo <= hi <= 100"
        );
        let e = load_str("", &["dataset.augment.crop_scale=[0.9, 0.5]"]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("dataset.augment.crop_scale = [0.9, 0.5]"),
            "{e}"
        );
        let e = load_str("", &["dataset.augment.flipp=0.5"]).unwrap_err();
        assert!(e.to_string().contains("dataset.augment.flipp"), "{e}");
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let e = load_str("fusion:\n  modality_dropout_probb: 0.1\n", &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("fusion.modality_dropout_probb"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
        let e = load_str("", &["trainig.lr=1e-3"]).unwrap_err().to_string();
        assert!(e.contains("trainig") && e.contains("unknown field"), "{e}");
    }

    #[test]
    fn wrong_type_and_bad_enum_are_named() {
        let e = load_str("training:\n  epochs: many\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("training.epochs"), "{e}");
        let e = load_str("", &["fusion.strategy=gated"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("fusion.strategy") && e.contains("concat"), "{e}");
    }

    #[test]
    fn malformed_yaml_and_missing_file_are_errors() {
        let e = load_str("training: [unclosed\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid YAML"), "{e}");
        let e = Config::load(Some(Path::new("/nonexistent/avfuse.yaml")), &[]).unwrap_err();
        assert!(
            e.to_string().starts_with("/nonexistent/avfuse.yaml:"),
            "{e}"
        );
        let e = load_str("- a\n- b\n", &[]).unwrap_err().to_string();
        assert!(e.contains("top level must be a mapping"), "{e}");
    }

    #[test]
    fn overrides_apply_on_top_of_the_file() {
        let c = load_str(
            "training:\n  lr: 0.01\n",
            &["training.lr=3e-4", "training.early_stopping.metric=ap"],
        )
        .unwrap();
        assert_eq!(c.training.lr, 3e-4);
        assert_eq!(c.training.early_stopping.metric, SelectionMetric::Ap);
        let e = load_str("", &["training.lr"]).unwrap_err().to_string();
        assert!(e.contains("expected key=value"), "{e}");
        // A key below a value: a section inside a file value is refused at once...
        let e = load_str("training:\n  lr: 0.01\n", &["training.lr.x=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("training.lr is a value"), "{e}");
        // ...and one created by --set is refused by the schema, naming the key.
        let e = load_str("", &["training.lr.x=1"]).unwrap_err().to_string();
        assert!(e.contains("training.lr: invalid type: map"), "{e}");
    }

    #[test]
    fn head_hidden_takes_one_width_or_a_list() {
        let hidden = |sets: &[&str]| load_str("", sets).map(|c| c.model.head.hidden);
        assert_eq!(hidden(&[]).unwrap(), vec![64]);
        assert_eq!(hidden(&["model.head.hidden=32"]).unwrap(), vec![32]);
        assert_eq!(
            hidden(&["model.head.hidden=[128, 32]"]).unwrap(),
            vec![128, 32]
        );
        assert_eq!(
            hidden(&["model.head.hidden=[]"]).unwrap(),
            Vec::<usize>::new()
        );
        let c = load_str("", &["model.head.hidden=[128, 32]"]).unwrap();
        assert_eq!(c.model_config().head_hidden, vec![128, 32]);
        for bad in ["-3", "wide", "[64, -1]"] {
            let e = hidden(&[&format!("model.head.hidden={bad}")])
                .unwrap_err()
                .to_string();
            assert!(e.contains("model.head.hidden"), "{bad}: {e}");
        }
        let e = hidden(&["model.head.hidden=[64, 0]"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.head.hidden") && e.contains("must be >= 1"),
            "{e}"
        );
    }

    #[test]
    fn yaml_round_trip() {
        let c = load_str("", &["training.epochs=3", "model.audio.enabled=false"]).unwrap();
        let back: Config = serde_yaml::from_str(&c.to_yaml()).unwrap();
        assert_eq!(back, c);
    }
}

#[cfg(test)]
mod documented_defaults {
    use super::*;

    /// `configs/quickstart.yaml` documents every key with its default: keep them equal.
    #[test]
    fn quickstart_yaml_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/quickstart.yaml");
        let from_file = Config::load(Some(&path), &[]).unwrap();
        assert_eq!(from_file, Config::default());
        // And it mentions every key: re-serialising the defaults yields no key it lacks.
        let text = std::fs::read_to_string(&path).unwrap();
        let yaml: Value = serde_yaml::from_str(&Config::default().to_yaml()).unwrap();
        fn keys(v: &Value, out: &mut Vec<String>) {
            if let Value::Mapping(m) = v {
                for (k, v) in m {
                    if let Value::String(k) = k {
                        out.push(k.clone());
                    }
                    keys(v, out);
                }
            }
        }
        let mut all = Vec::new();
        keys(&yaml, &mut all);
        for k in all {
            assert!(
                text.contains(&format!("{k}:")),
                "configs/quickstart.yaml does not document `{k}`"
            );
        }
    }
}
