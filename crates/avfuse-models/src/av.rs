//! The audio-visual classifier: a video and an audio encoder, optional temporal encoders, a
//! fusion and an MLP head. With every default it is the original network: frame CNN + mel
//! CNN, per-step concat ("clip + sync") fusion, MLP head.

use avfuse_nn::mask_batch;
use burn::config::Config;
use burn::module::{Module, ParamId, list_param_ids};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::Modality;
use crate::audio_resnet::{AudioResNet, AudioResNetConfig};
use crate::efficientnet::{EfficientNet, EfficientNetB0Config};
use crate::encoders::{FrameCnn, FrameCnnConfig, MelCnn, MelCnnConfig};
use crate::error::{ModelError, invalid};
use crate::fusion::{Fusion, FusionConfig, FusionOutput, FusionStrategy, ModalityFeatures};
use crate::resnet::{ResNet, ResNetConfig};
use crate::temporal::{TemporalEncoder, TemporalEncoderConfig};
use crate::weights::{LoadOptions, load_pretrained};

/// How an encoder treats the samples whose modality is absent (design 2.3). All three give
/// the same output for absent samples (zero features); they differ in what the encoder's
/// BatchNorm sees and in the work done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blanking {
    /// Run on every sample; masked BatchNorm takes statistics from present samples only and
    /// zeroes absent ones (no gather/scatter).
    Mask,
    /// Run each encoder on its present samples only (gather), scatter the features back with
    /// zeros for absent ones: blanked samples cost nothing. Agrees with `Mask`.
    Compact,
    /// Run on every sample with plain BatchNorm: absent samples' zero inputs enter the batch
    /// statistics (the cheap baseline the other two fix).
    ZeroInput,
}

/// The `compact` step: run `f` on rows `rows` (dim 0) of `x` only and scatter its output
/// into `zeros` (which has one row per row of `x`). With no row listed, `f` does not run and
/// `zeros` is returned: the encoder then has no gradient entry at all.
pub fn run_on_rows<const D: usize, const O: usize>(
    x: Tensor<D>,
    rows: Vec<i64>,
    zeros: Tensor<O>,
    f: impl FnOnce(Tensor<D>) -> Tensor<O>,
) -> Tensor<O> {
    if rows.is_empty() {
        return zeros;
    }
    let n = rows.len();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &zeros.device());
    let sub = f(x.select(0, idx.clone()));
    zeros.select_assign(0, idx, sub, IndexingUpdateOp::Add)
}

/// The per-frame video encoder (config `model.video.backbone`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoBackbone {
    /// The small [`FrameCnn`] (`video`'s channels and embed_dim).
    Cnn,
    /// torchvision ResNet-18 ([`ResNet`], `8 * video_base_channels` features).
    Resnet18,
    /// torchvision ResNet-34 (`8 * video_base_channels` features).
    Resnet34,
    /// torchvision ResNet-50 (`32 * video_base_channels` features).
    Resnet50,
    /// timm EfficientNet-B0 ([`EfficientNet`], 1280 features).
    EfficientnetB0,
}

impl VideoBackbone {
    /// ResNet depth, `None` for the other backbones.
    fn resnet_depth(self) -> Option<usize> {
        match self {
            VideoBackbone::Resnet18 => Some(18),
            VideoBackbone::Resnet34 => Some(34),
            VideoBackbone::Resnet50 => Some(50),
            VideoBackbone::Cnn | VideoBackbone::EfficientnetB0 => None,
        }
    }

    /// True for the ImageNet backbones (ResNet, EfficientNet).
    pub fn is_imagenet(self) -> bool {
        self != VideoBackbone::Cnn
    }
}

/// The log-mel encoder (config `model.audio.encoder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioEncoderKind {
    /// The small [`MelCnn`] (`audio`).
    Cnn,
    /// The ResNet-style [`AudioResNet`] (`audio_resnet`).
    Resnet,
}

/// ImageNet channel means and standard deviations (RGB), as torchvision and timm use.
const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Configuration of [`AvModel`].
///
/// Every field added after the original ones defaults to the original network: `cnn`
/// encoders, no temporal encoder, `concat` fusion, one hidden head layer. Such a model has
/// exactly the original module tree, parameter names and initial weights.
#[derive(Config, Debug)]
pub struct AvModelConfig {
    /// The per-frame video encoder when `video_backbone` is `cnn`; its `in_channels` is the
    /// frames' channel count for every backbone. Ignored when `enable_video` is false.
    pub video: FrameCnnConfig,
    /// The log-mel encoder when `audio_encoder` is `cnn`; ignored when `enable_audio` is
    /// false.
    pub audio: MelCnnConfig,
    /// Build and use the video branch.
    #[config(default = true)]
    pub enable_video: bool,
    /// Build and use the audio branch.
    #[config(default = true)]
    pub enable_audio: bool,
    /// `concat`: width of the per-step sync stream; `attention` / `cross_modal`: the common
    /// width the modalities are projected to (`cross_modal` outputs twice this).
    #[config(default = 64)]
    pub fusion_dim: usize,
    /// Hidden widths of the MLP head, in order (ReLU after each); empty for a single linear
    /// layer.
    #[config(default = "vec![64]")]
    pub head_hidden: Vec<usize>,
    /// Dropout probability before each head layer.
    #[config(default = 0.2)]
    pub head_dropout: f64,
    /// Number of output logits: 1 for binary (fake/real) classification, `K` for `K` classes.
    #[config(default = 1)]
    pub num_outputs: usize,
    /// Which per-frame video encoder.
    #[config(default = "VideoBackbone::Cnn")]
    pub video_backbone: VideoBackbone,
    /// ResNet backbones: stem and `layer1` width (64 = torchvision; pretrained weights need
    /// 64; smaller values give a narrow ResNet of the same topology).
    #[config(default = 64)]
    pub video_base_channels: usize,
    /// ResNet / EfficientNet: a torchvision/timm state dict (`.safetensors`, `.pth`) loaded by
    /// [`AvModelConfig::init_pretrained`] (its classifier head is ignored). `None`: random
    /// initialisation.
    #[config(default = "None")]
    pub video_pretrained: Option<String>,
    /// Which log-mel encoder.
    #[config(default = "AudioEncoderKind::Cnn")]
    pub audio_encoder: AudioEncoderKind,
    /// The audio encoder when `audio_encoder` is `resnet`.
    #[config(default = "AudioResNetConfig::new()")]
    pub audio_resnet: AudioResNetConfig,
    /// Temporal encoder run over each modality's per-step features (one per modality, with
    /// its own weights); `None`: the steps are used as they are and the clip embedding is
    /// their temporal mean (the original network). Its `input_dim` is ignored: each
    /// modality's encoder width is used.
    #[config(default = "None")]
    pub temporal: Option<TemporalEncoderConfig>,
    /// How the modalities are combined.
    #[config(default = "FusionStrategy::Concat")]
    pub fusion_strategy: FusionStrategy,
    /// `cross_modal`: attention heads (divide `fusion_dim`).
    #[config(default = 4)]
    pub fusion_heads: usize,
    /// `cross_modal`: cross-attention layers.
    #[config(default = 1)]
    pub fusion_layers: usize,
    /// `cross_modal`: feed-forward hidden width.
    #[config(default = 256)]
    pub fusion_ff_dim: usize,
    /// `cross_modal`: dropout (training only), in `[0, 1)`.
    #[config(default = 0.1)]
    pub fusion_dropout: f64,
}

/// One batch of model input.
///
/// `B` clips of `T` frames; the mel has `T * mel_frames_per_step` frames so that the mel CNN
/// yields one step per video frame.
#[derive(Clone, Debug)]
pub struct AvInput {
    /// `[B, T, 3, H, W]` frames, normalised (u8 / 255 - 0.5).
    pub frames: Tensor<5>,
    /// `[B, 1, n_mels, T * mel_frames_per_step]` log-mel, normalised to zero mean, unit std.
    pub mel: Tensor<4>,
    /// `[B, 2]` presence mask in [`Modality`] column order (1 present, 0 absent).
    pub presence: Tensor<2>,
}

/// Audio-visual classifier.
///
/// **Encoders.** Video: the frame encoder (`video_backbone`: the small CNN, ResNet-18/34/50
/// or EfficientNet-B0) embeds each frame (`[B*T, C, H, W]` -> `[B, T, Dv]`); the ImageNet
/// backbones first map the frames from `u8 / 255 - 0.5` to ImageNet normalisation
/// (`(x + 0.5 - mean) / std` per channel). Audio: the mel encoder (`cnn` or `resnet`) embeds
/// each video-frame-long slice of the spectrogram (`[B, T, Da]`). Each embedding is multiplied
/// by its modality's presence, so an absent modality contributes exactly zero.
///
/// **Temporal encoders** (optional, `temporal`): one per modality, over its `[B, T, D]`
/// steps with the modality's presence as time mask (an absent sample's steps are all masked:
/// its per-step outputs and clip embedding are exactly zero). They give per-step outputs and a
/// clip embedding; without them the steps are kept and the clip embedding is their temporal
/// mean.
///
/// **Fusion** (`fusion_strategy`):
/// - `concat` (the original): two streams. The *clip* stream is each modality's clip
///   embedding (`[B, Dv]`, `[B, Da]`), which carries per-clip appearance (e.g. a manipulated
///   mouth). The *sync* stream is the per-step outputs centred on the clip embedding
///   (`V_t - mean_t V`, `A_t - mean_t A`), concatenated per step, passed through a linear
///   layer and a ReLU, *then* averaged over time (`[B, fusion_dim]`). Centring removes what
///   is constant within a clip (background, skin, voice timbre) and leaves what moves (mouth
///   opening, loudness); applying the non-linearity per step before averaging keeps their
///   step-by-step relation (audio-visual synchrony), which averaging each stream over time
///   first would erase. Output `[B, Dv + Da + fusion_dim]`.
/// - `attention`: [`crate::fusion::AttentionFusion`] over the clip embeddings, softmax over
///   the present modalities only: `[B, fusion_dim]`.
/// - `cross_modal`: [`crate::fusion::CrossModalFusion`] between the two per-step sequences,
///   masked by presence: `[B, 2 fusion_dim]` (both modalities must be enabled).
///
/// **Head**: for each hidden width dropout, linear, ReLU; then dropout and the output linear
/// layer: `[B, num_outputs]` logits.
///
/// **Blanking** ([`Blanking`]): `mask` and `zero_input` run every encoder on the whole batch;
/// `compact` runs each modality's encoder *and* temporal encoder on its present samples only
/// and scatters their outputs back with zeros. The fusion and the head always run on the whole
/// batch with the presence mask (they are cheap and their masking already keeps absent
/// modalities out). With dropout inside a temporal encoder (`temporal.dropout > 0`) in
/// training, `compact` and `mask` draw different dropout masks (the same distribution), so
/// they agree exactly only with that dropout at 0 or in evaluation.
#[derive(Module, Debug)]
pub struct AvModel {
    /// Video encoder, `video_backbone: cnn`.
    video: Option<FrameCnn>,
    /// Video encoder, `video_backbone: resnet18|34|50`.
    resnet: Option<ResNet>,
    /// Video encoder, `video_backbone: efficientnet_b0`.
    efficientnet: Option<EfficientNet>,
    /// Temporal encoder of the video steps.
    video_temporal: Option<TemporalEncoder>,
    /// Audio encoder, `audio_encoder: cnn`.
    audio: Option<MelCnn>,
    /// Audio encoder, `audio_encoder: resnet`.
    audio_resnet: Option<AudioResNet>,
    /// Temporal encoder of the audio steps.
    audio_temporal: Option<TemporalEncoder>,
    /// `concat`: the sync stream's per-step projection.
    fuse: Option<Linear>,
    /// `attention` / `cross_modal`.
    fusion: Option<Fusion>,
    /// First hidden layer of the head (none with `head_hidden` empty).
    head_hidden: Option<Linear>,
    /// Further hidden layers of the head.
    head_more: Vec<Linear>,
    /// Output layer of the head.
    head_out: Linear,
    dropout: Dropout,
}

impl AvModelConfig {
    /// The ResNet this configuration describes (a feature extractor, no classifier), `None`
    /// for the other backbones.
    pub fn resnet_config(&self) -> Option<ResNetConfig> {
        self.video_backbone.resnet_depth().map(|depth| {
            ResNetConfig::new(depth)
                .with_in_channels(self.video.in_channels)
                .with_base_channels(self.video_base_channels)
        })
    }

    /// Width of the per-frame video features (`Dv`).
    pub fn video_dim(&self) -> usize {
        match self.video_backbone {
            VideoBackbone::Cnn => self.video.embed_dim,
            VideoBackbone::EfficientnetB0 => EfficientNetB0Config::new().feature_dim(),
            _ => self
                .resnet_config()
                .map_or(self.video_base_channels * 8, |c| c.feature_dim()),
        }
    }

    /// Width of the per-step audio features (`Da`).
    pub fn audio_dim(&self) -> usize {
        match self.audio_encoder {
            AudioEncoderKind::Cnn => self.audio.embed_dim,
            AudioEncoderKind::Resnet => self.audio_resnet.embed_dim,
        }
    }

    /// Mel frames per video frame the selected audio encoder expects.
    pub fn mel_frames_per_step(&self) -> usize {
        match self.audio_encoder {
            AudioEncoderKind::Cnn => self.audio.mel_frames_per_step,
            AudioEncoderKind::Resnet => self.audio_resnet.mel_frames_per_step,
        }
    }

    /// The temporal encoder of a modality whose encoder width is `input_dim`.
    fn temporal_for(&self, input_dim: usize) -> Option<TemporalEncoderConfig> {
        self.temporal.as_ref().map(|t| TemporalEncoderConfig {
            input_dim,
            ..t.clone()
        })
    }

    /// Per-modality widths entering the fusion, in [`Modality`] order of the enabled ones.
    pub fn fusion_input_dims(&self) -> Vec<usize> {
        let mut dims = Vec::with_capacity(2);
        if self.enable_video {
            let d = self.video_dim();
            dims.push(self.temporal_for(d).map_or(d, |t| t.output_dim()));
        }
        if self.enable_audio {
            let d = self.audio_dim();
            dims.push(self.temporal_for(d).map_or(d, |t| t.output_dim()));
        }
        dims
    }

    /// The [`FusionConfig`] of `attention` / `cross_modal`.
    pub fn fusion_config(&self) -> FusionConfig {
        FusionConfig::new(self.fusion_input_dims())
            .with_strategy(self.fusion_strategy)
            .with_dim(self.fusion_dim)
            .with_heads(self.fusion_heads)
            .with_layers(self.fusion_layers)
            .with_ff_dim(self.fusion_ff_dim)
            .with_dropout(self.fusion_dropout)
    }

    /// Width of the fused representation ([`AvModel::embed`]), the head's input.
    pub fn embed_dim(&self) -> usize {
        match self.fusion_strategy {
            FusionStrategy::Concat => {
                self.fusion_input_dims().iter().sum::<usize>() + self.fusion_dim
            }
            _ => self.fusion_config().output_dim(),
        }
    }

    /// Check every field; errors name the config key (`model.*` / `fusion.*`).
    pub fn validate(&self) -> Result<(), ModelError> {
        if !self.enable_video && !self.enable_audio {
            return Err(invalid(
                "model.enable_video/model.enable_audio",
                (self.enable_video, self.enable_audio),
                "at least one modality must be enabled",
            ));
        }
        if self.enable_video {
            if self.video.in_channels == 0 {
                return Err(invalid(
                    "model.video.in_channels",
                    self.video.in_channels,
                    "must be >= 1",
                ));
            }
            match self.video_backbone {
                VideoBackbone::Cnn => {
                    self.video.validate("model.video")?;
                    if let Some(p) = &self.video_pretrained {
                        return Err(invalid(
                            "model.video.pretrained",
                            p,
                            "only the resnet18/34/50 and efficientnet_b0 backbones load \
                             pretrained weights (model.video.backbone is cnn)",
                        ));
                    }
                }
                VideoBackbone::EfficientnetB0 => EfficientNetB0Config::new()
                    .with_in_channels(self.video.in_channels)
                    .validate()?,
                _ => {
                    if self.video_base_channels == 0 {
                        return Err(invalid(
                            "model.video.base_channels",
                            self.video_base_channels,
                            "must be >= 1",
                        ));
                    }
                    if let Some(c) = self.resnet_config() {
                        c.validate()?;
                    }
                }
            }
        }
        if self.enable_audio {
            match self.audio_encoder {
                AudioEncoderKind::Cnn => self.audio.validate("model.audio")?,
                AudioEncoderKind::Resnet => self.audio_resnet.validate("model.audio")?,
            }
        }
        if self.enable_video
            && let Some(t) = self.temporal_for(self.video_dim())
        {
            t.validate("model.temporal")?;
        }
        if self.enable_audio
            && let Some(t) = self.temporal_for(self.audio_dim())
        {
            t.validate("model.temporal")?;
        }
        if self.fusion_dim == 0 {
            return Err(invalid("fusion.dim", self.fusion_dim, "must be >= 1"));
        }
        if self.fusion_strategy != FusionStrategy::Concat {
            self.fusion_config().validate("fusion")?;
        }
        if self.head_hidden.contains(&0) {
            return Err(invalid(
                "model.head.hidden",
                &self.head_hidden,
                "every hidden width must be >= 1",
            ));
        }
        if !(0.0..1.0).contains(&self.head_dropout) {
            return Err(invalid(
                "model.head.dropout",
                self.head_dropout,
                "must be in [0, 1)",
            ));
        }
        if self.num_outputs == 0 {
            return Err(invalid(
                "model.head.num_outputs",
                self.num_outputs,
                "must be >= 1",
            ));
        }
        Ok(())
    }

    /// Validate and build the model on `device`, randomly initialised (parameters are
    /// initialised lazily, at first use). Pretrained backbone weights are *not* loaded: see
    /// [`init_pretrained`](Self::init_pretrained). This is what a checkpoint is loaded into.
    pub fn init(&self, device: &Device) -> Result<AvModel, ModelError> {
        self.validate()?;
        // The original modules are created first and in their original order; the others
        // only when selected.
        let video = (self.enable_video && self.video_backbone == VideoBackbone::Cnn)
            .then(|| self.video.init(device));
        let audio = (self.enable_audio && self.audio_encoder == AudioEncoderKind::Cnn)
            .then(|| self.audio.init(device));
        let fused_in: usize = self.fusion_input_dims().iter().sum();
        let fuse = (self.fusion_strategy == FusionStrategy::Concat)
            .then(|| LinearConfig::new(fused_in, self.fusion_dim).init(device));
        let mut d_in = self.embed_dim();
        let mut head = Vec::with_capacity(self.head_hidden.len());
        for &d_out in &self.head_hidden {
            head.push(LinearConfig::new(d_in, d_out).init(device));
            d_in = d_out;
        }
        let head_out = LinearConfig::new(d_in, self.num_outputs).init(device);
        let mut head = head.into_iter();
        let head_hidden = head.next();
        let head_more: Vec<Linear> = head.collect();

        let resnet = match (self.enable_video, self.resnet_config()) {
            (true, Some(c)) => Some(c.init(device)?),
            _ => None,
        };
        let efficientnet =
            if self.enable_video && self.video_backbone == VideoBackbone::EfficientnetB0 {
                Some(
                    EfficientNetB0Config::new()
                        .with_in_channels(self.video.in_channels)
                        .init(device)?,
                )
            } else {
                None
            };
        let audio_resnet = if self.enable_audio && self.audio_encoder == AudioEncoderKind::Resnet {
            Some(self.audio_resnet.init(device)?)
        } else {
            None
        };
        let video_temporal = match self.temporal_for(self.video_dim()) {
            Some(t) if self.enable_video => Some(t.init(device)?),
            _ => None,
        };
        let audio_temporal = match self.temporal_for(self.audio_dim()) {
            Some(t) if self.enable_audio => Some(t.init(device)?),
            _ => None,
        };
        let fusion = match self.fusion_strategy {
            FusionStrategy::Concat => None,
            _ => Some(self.fusion_config().init(device)?),
        };
        Ok(AvModel {
            video,
            resnet,
            efficientnet,
            video_temporal,
            audio,
            audio_resnet,
            audio_temporal,
            fuse,
            fusion,
            head_hidden,
            head_more,
            head_out,
            dropout: DropoutConfig::new(self.head_dropout).init(),
        })
    }

    /// [`init`](Self::init), then load `video_pretrained` (when set) into the ResNet or
    /// EfficientNet backbone by PyTorch parameter name (the file's classifier is ignored).
    /// Use it to start a training run; a checkpoint carries the weights and needs [`init`].
    ///
    /// # Errors
    /// [`ModelError`] for an invalid configuration, an unreadable weight file, or a state
    /// dict that does not match the backbone (missing / unexpected keys and shape mismatches
    /// listed by name).
    pub fn init_pretrained(&self, device: &Device) -> Result<AvModel, ModelError> {
        let mut model = self.init(device)?;
        if let Some(path) = &self.video_pretrained {
            let opts = LoadOptions::default();
            if let Some(r) = model.resnet.take() {
                model.resnet = Some(load_pretrained(r, path, &opts)?);
            } else if let Some(e) = model.efficientnet.take() {
                model.efficientnet = Some(load_pretrained(e, path, &opts)?);
            }
            tracing::info!(path = %path, "loaded pretrained video backbone weights");
        }
        Ok(model)
    }
}

/// One modality's per-step outputs `[B, T, D]` and clip embedding `[B, D]`.
struct Branch {
    steps: Tensor<3>,
    clip: Tensor<2>,
}

impl AvModel {
    /// Ids of the parameters of one modality's branch: its encoder and its temporal encoder
    /// (empty when that branch is disabled). Used by the trainer's rule for inactive
    /// modalities and its per-module gradient norms.
    pub fn encoder_param_ids(&self, m: Modality) -> Vec<ParamId> {
        let mut ids = Vec::new();
        match m {
            Modality::Video => {
                ids.extend(self.video.as_ref().map(list_param_ids).unwrap_or_default());
                ids.extend(self.resnet.as_ref().map(list_param_ids).unwrap_or_default());
                ids.extend(
                    self.efficientnet
                        .as_ref()
                        .map(list_param_ids)
                        .unwrap_or_default(),
                );
                ids.extend(
                    self.video_temporal
                        .as_ref()
                        .map(list_param_ids)
                        .unwrap_or_default(),
                );
            }
            Modality::Audio => {
                ids.extend(self.audio.as_ref().map(list_param_ids).unwrap_or_default());
                ids.extend(
                    self.audio_resnet
                        .as_ref()
                        .map(list_param_ids)
                        .unwrap_or_default(),
                );
                ids.extend(
                    self.audio_temporal
                        .as_ref()
                        .map(list_param_ids)
                        .unwrap_or_default(),
                );
            }
        }
        ids
    }

    /// Visit the parameters of one modality's branch, its encoder then its temporal encoder
    /// (nothing when the branch is disabled). The fusion's per-modality projections
    /// (`attention`, `cross_modal`) are fusion parameters and not visited (see
    /// [`visit_modality_params`](Self::visit_modality_params)).
    pub fn visit_encoder<V: burn::module::ModuleVisitor>(&self, m: Modality, visitor: &mut V) {
        match m {
            Modality::Video => {
                self.video.visit(visitor);
                self.resnet.visit(visitor);
                self.efficientnet.visit(visitor);
                self.video_temporal.visit(visitor);
            }
            Modality::Audio => {
                self.audio.visit(visitor);
                self.audio_resnet.visit(visitor);
                self.audio_temporal.visit(visitor);
            }
        }
    }

    /// Visit every parameter that only modality `m` feeds: its branch
    /// ([`visit_encoder`](Self::visit_encoder)) and the fusion's projection of it
    /// (`attention`, `cross_modal`). When `m` is absent from a whole batch these all get
    /// zero gradients; they are what `inactive_update: skip` leaves untouched. Shared
    /// parameters (the concat sync stream, the attention scorer and its per-modality bias
    /// vector, cross-attention layers, the head) are not visited.
    pub fn visit_modality_params<V: burn::module::ModuleVisitor>(
        &self,
        m: Modality,
        visitor: &mut V,
    ) {
        self.visit_encoder(m, visitor);
        // The fusion sees the enabled branches in `Modality::ALL` order.
        let index = match m {
            Modality::Video => 0,
            Modality::Audio => usize::from(self.video_enabled()),
        };
        let enabled = match m {
            Modality::Video => self.video_enabled(),
            Modality::Audio => self.audio_enabled(),
        };
        if enabled && let Some(f) = &self.fusion {
            f.visit_modality_projection(index, visitor);
        }
    }

    /// Width of the fused representation (the head's input). Reads lazy shapes only.
    pub fn embed_dim(&self) -> usize {
        let first = self.head_hidden.as_ref().unwrap_or(&self.head_out);
        first.weight.lazy_shape()[0]
    }

    /// Number of output logits. Reads lazy shapes only.
    pub fn num_outputs(&self) -> usize {
        self.head_out.weight.lazy_shape()[1]
    }

    /// The fused clip representation `[B, embed_dim]` (the `embed` API: features before
    /// the head). `concat`: the present modalities' clip embeddings followed by the sync
    /// stream; `attention`: `[B, fusion_dim]`; `cross_modal`: `[B, 2 fusion_dim]`.
    pub fn embed(&self, input: AvInput) -> Tensor<2> {
        self.embed_with(input, Blanking::Mask)
    }

    /// [`AvModel::embed`] with a chosen way of handling blanked samples (design 2.3).
    pub fn embed_with(&self, input: AvInput, blanking: Blanking) -> Tensor<2> {
        self.embed_scaled(input, blanking, 1.0)
    }

    /// [`AvModel::embed_with`] with every modality's per-step features multiplied by
    /// `feature_scale` after masking (before the temporal encoders): modality dropout's
    /// optional rescale of the kept modalities in training (`1 / (1 - p / M)`, slp's MMDrop).
    /// 1 changes nothing (and costs nothing).
    pub fn embed_scaled(
        &self,
        input: AvInput,
        blanking: Blanking,
        feature_scale: f64,
    ) -> Tensor<2> {
        self.fuse_scaled(input, blanking, feature_scale).fused
    }

    /// [`AvModel::embed_scaled`] with the fusion's attention weights: `attention` gives the
    /// `[B, M]` modality weights, `cross_modal` the attention maps (`M` counts the enabled
    /// modalities, in [`Modality`] order).
    pub fn fuse_scaled(
        &self,
        input: AvInput,
        blanking: Blanking,
        feature_scale: f64,
    ) -> FusionOutput {
        let [b, t, _, _, _] = input.frames.dims();
        // `compact` needs the present samples' indices on the host (one read of the [B, 2]
        // presence; free on the CPU, a sync on a GPU).
        let host_presence: Option<Vec<f32>> = match blanking {
            Blanking::Compact => input
                .presence
                .clone()
                .cast(burn::tensor::DType::F32)
                .into_data()
                .try_to_vec::<f32>()
                .ok(),
            _ => None,
        };
        // Unreadable presence (cannot happen for a float tensor cast to f32): `mask` gives
        // the same result, so fall back to it rather than treat every sample as absent.
        let blanking = match (blanking, &host_presence) {
            (Blanking::Compact, None) => Blanking::Mask,
            (b, _) => b,
        };
        let present = |m: Modality| -> Vec<i64> {
            host_presence
                .as_ref()
                .map(|p| {
                    (0..b)
                        .filter(|&i| p[i * 2 + m as usize] != 0.0)
                        .map(|i| i as i64)
                        .collect()
                })
                .unwrap_or_default()
        };
        let column = |m: Modality| -> Tensor<1> {
            input.presence.clone().narrow(1, m as usize, 1).reshape([b])
        };
        let mut branches: Vec<Branch> = Vec::with_capacity(2);
        let mut columns: Vec<Tensor<2>> = Vec::with_capacity(2);
        if self.video_enabled() {
            let p = column(Modality::Video);
            let rows = present(Modality::Video);
            branches.push(self.video_branch(
                input.frames.clone(),
                p,
                rows,
                blanking,
                feature_scale,
            ));
            columns.push(
                input
                    .presence
                    .clone()
                    .narrow(1, Modality::Video as usize, 1),
            );
        }
        if self.audio_enabled() {
            let p = column(Modality::Audio);
            let rows = present(Modality::Audio);
            branches.push(self.audio_branch(input.mel, t, p, rows, blanking, feature_scale));
            columns.push(
                input
                    .presence
                    .clone()
                    .narrow(1, Modality::Audio as usize, 1),
            );
        }
        match (&self.fuse, &self.fusion) {
            (Some(fuse), _) => {
                let mut clip = Vec::with_capacity(branches.len() + 1);
                let mut centred = Vec::with_capacity(branches.len());
                for br in branches {
                    let mean = br.clip.unsqueeze_dim::<3>(1);
                    centred.push(br.steps - mean.clone());
                    clip.push(mean.squeeze_dim::<2>(1));
                }
                let sync = relu(fuse.forward(Tensor::cat(centred, 2)))
                    .mean_dim(1)
                    .squeeze_dim::<2>(1);
                clip.push(sync);
                FusionOutput {
                    fused: Tensor::cat(clip, 1),
                    modality_weights: None,
                    cross_weights: None,
                }
            }
            (None, Some(fusion)) => {
                let features: Vec<ModalityFeatures> = branches
                    .into_iter()
                    .map(|br| ModalityFeatures {
                        clip: br.clip,
                        tokens: Some(br.steps),
                        time_mask: None,
                    })
                    .collect();
                fusion.forward(&features, &Tensor::cat(columns, 1))
            }
            // `init` builds exactly one of the two.
            (None, None) => unreachable!("AvModel has neither concat nor a fusion module"),
        }
    }

    fn video_enabled(&self) -> bool {
        self.video.is_some() || self.resnet.is_some() || self.efficientnet.is_some()
    }

    fn audio_enabled(&self) -> bool {
        self.audio.is_some() || self.audio_resnet.is_some()
    }

    /// Width of the per-frame video features. Reads lazy shapes only.
    fn video_dim(&self) -> usize {
        if let Some(v) = &self.video {
            v.embed_dim()
        } else if let Some(r) = &self.resnet {
            r.feature_dim()
        } else if let Some(e) = &self.efficientnet {
            e.feature_dim()
        } else {
            0
        }
    }

    /// Width of the per-step audio features. Reads lazy shapes only.
    fn audio_dim(&self) -> usize {
        if let Some(a) = &self.audio {
            a.embed_dim()
        } else if let Some(a) = &self.audio_resnet {
            a.embed_dim()
        } else {
            0
        }
    }

    /// Per-frame video features `[N, C, H, W]` -> `[N, Dv]`, `presence` `[N]` for the
    /// BatchNorm statistics (`None`: all present).
    fn encode_frames(&self, frames: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<2> {
        if let Some(v) = &self.video {
            return v.forward_masked(frames, presence);
        }
        let x = imagenet_normalise(frames);
        if let Some(r) = &self.resnet {
            r.features_masked(x, presence)
        } else if let Some(e) = &self.efficientnet {
            e.features_masked(x, presence)
        } else {
            unreachable!("encode_frames on a model without a video branch")
        }
    }

    /// Per-step audio features `[B, 1, n_mels, S * f]` -> `[B, S, Da]`.
    fn encode_mel(&self, mel: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<3> {
        if let Some(a) = &self.audio {
            a.forward_masked(mel, presence)
        } else if let Some(a) = &self.audio_resnet {
            a.forward_masked(mel, presence)
        } else {
            unreachable!("encode_mel on a model without an audio branch")
        }
    }

    /// The temporal stage of a branch over masked, scaled steps `[N, T, D]` with time mask
    /// `mask` `[N, T]`: the temporal encoder, or (none) the steps and their mean.
    fn temporal(
        encoder: Option<&TemporalEncoder>,
        steps: Tensor<3>,
        mask: Option<&Tensor<2>>,
    ) -> Branch {
        match encoder {
            Some(enc) => {
                let out = enc.forward(steps, mask);
                Branch {
                    steps: out.steps,
                    clip: out.clip,
                }
            }
            None => Branch {
                clip: steps.clone().mean_dim(1).squeeze_dim::<2>(1),
                steps,
            },
        }
    }

    /// `compact`: run `f` (encoder + temporal stage) on the present rows of `x` only and
    /// scatter its steps and clip back (`[B, T, D]`, `[B, D]`, zeros for absent samples).
    fn compact_branch<const D: usize>(
        x: Tensor<D>,
        rows: Vec<i64>,
        [b, t, d]: [usize; 3],
        f: impl FnOnce(Tensor<D>) -> Branch,
    ) -> Branch {
        let zeros = Tensor::<3>::zeros([b, t + 1, d], &x.device());
        // Steps and clip travel together as one [N, T + 1, D] tensor.
        let both = run_on_rows(x, rows, zeros, |x| {
            let br = f(x);
            Tensor::cat(vec![br.steps, br.clip.unsqueeze_dim::<3>(1)], 1)
        });
        Branch {
            steps: both.clone().narrow(1, 0, t),
            clip: both.narrow(1, t, 1).squeeze_dim::<2>(1),
        }
    }

    /// The video branch: `[B, T, C, H, W]` frames and `[B]` presence to steps and clip.
    fn video_branch(
        &self,
        frames: Tensor<5>,
        p: Tensor<1>,
        rows: Vec<i64>,
        blanking: Blanking,
        feature_scale: f64,
    ) -> Branch {
        let [b, t, c, h, w] = frames.dims();
        let d = self.video_dim();
        let temporal = self.video_temporal.as_ref();
        let scale = |x: Tensor<3>| scale(x, feature_scale);
        match blanking {
            Blanking::Compact => {
                let d_out = temporal.map_or(d, |e| e.output_dim());
                Self::compact_branch(frames, rows, [b, t, d_out], |x| {
                    let n = x.dims()[0];
                    let v = self
                        .encode_frames(x.reshape([n * t, c, h, w]), None)
                        .reshape([n, t, d]);
                    Self::temporal(temporal, scale(v), None)
                })
            }
            Blanking::Mask | Blanking::ZeroInput => {
                let frames = frames.reshape([b * t, c, h, w]);
                let v = if blanking == Blanking::Mask {
                    // One presence per frame for the BatchNorm statistics: [B] -> [B*T].
                    let per_frame = p.clone().reshape([b, 1]).repeat_dim(1, t).reshape([b * t]);
                    self.encode_frames(frames, Some(&per_frame))
                } else {
                    self.encode_frames(frames, None)
                };
                let v = scale(mask_batch(v.reshape([b, t, d]), p.clone()));
                let mask = temporal.map(|_| time_mask(&p, t));
                Self::temporal(temporal, v, mask.as_ref())
            }
        }
    }

    /// The audio branch: `[B, 1, n_mels, T * f]` mel and `[B]` presence to steps and clip.
    fn audio_branch(
        &self,
        mel: Tensor<4>,
        t: usize,
        p: Tensor<1>,
        rows: Vec<i64>,
        blanking: Blanking,
        feature_scale: f64,
    ) -> Branch {
        let [b, _, _, _] = mel.dims();
        let temporal = self.audio_temporal.as_ref();
        let scale = |x: Tensor<3>| scale(x, feature_scale);
        match blanking {
            Blanking::Compact => {
                let d_out = temporal.map_or(self.audio_dim(), |e| e.output_dim());
                // One audio step per video frame (AvInput's layout): S = T.
                Self::compact_branch(mel, rows, [b, t, d_out], |x| {
                    Self::temporal(temporal, scale(self.encode_mel(x, None)), None)
                })
            }
            Blanking::Mask | Blanking::ZeroInput => {
                let a = if blanking == Blanking::Mask {
                    self.encode_mel(mel, Some(&p))
                } else {
                    self.encode_mel(mel, None)
                };
                let a = scale(mask_batch(a, p.clone()));
                let mask = temporal.map(|_| time_mask(&p, a.dims()[1]));
                Self::temporal(temporal, a, mask.as_ref())
            }
        }
    }

    /// Logits `[B, num_outputs]`.
    pub fn forward(&self, input: AvInput) -> Tensor<2> {
        self.forward_with(input, Blanking::Mask)
    }

    /// [`AvModel::forward`] with a chosen [`Blanking`].
    pub fn forward_with(&self, input: AvInput, blanking: Blanking) -> Tensor<2> {
        self.forward_scaled(input, blanking, 1.0)
    }

    /// [`AvModel::forward_with`] with the features scaled as in [`AvModel::embed_scaled`].
    pub fn forward_scaled(
        &self,
        input: AvInput,
        blanking: Blanking,
        feature_scale: f64,
    ) -> Tensor<2> {
        let z = self.embed_scaled(input, blanking, feature_scale);
        self.head(z)
    }

    /// The MLP head: `[B, embed_dim]` to `[B, num_outputs]` logits.
    pub fn head(&self, z: Tensor<2>) -> Tensor<2> {
        let z = self
            .head_hidden
            .iter()
            .chain(&self.head_more)
            .fold(z, |z, layer| relu(layer.forward(self.dropout.forward(z))));
        self.head_out.forward(self.dropout.forward(z))
    }
}

/// `x * s`, skipped (exactly) for `s = 1`.
fn scale(x: Tensor<3>, s: f64) -> Tensor<3> {
    if s == 1.0 { x } else { x * s }
}

/// A modality's presence `[B]` as the time mask `[B, T]` of its temporal encoder.
fn time_mask(p: &Tensor<1>, t: usize) -> Tensor<2> {
    let [b] = p.dims();
    p.clone().reshape([b, 1]).repeat_dim(1, t)
}

/// Frames normalised as `u8 / 255 - 0.5` to ImageNet normalisation, `[N, 3, H, W]`:
/// `(x + 0.5 - mean_c) / std_c`. Inputs with another channel count are only shifted back to
/// `[0, 1]`.
fn imagenet_normalise(x: Tensor<4>) -> Tensor<4> {
    let [_, c, _, _] = x.dims();
    let x = x + 0.5;
    if c != 3 {
        return x;
    }
    let device = x.device();
    let mean = Tensor::<1>::from_data(TensorData::new(IMAGENET_MEAN.to_vec(), [3]), &device)
        .reshape([1, 3, 1, 1]);
    let inv_std = Tensor::<1>::from_data(
        TensorData::new(
            IMAGENET_STD.iter().map(|s| 1.0 / s).collect::<Vec<f32>>(),
            [3],
        ),
        &device,
    )
    .reshape([1, 3, 1, 1]);
    (x - mean) * inv_std
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    fn input(d: &Device, presence: [f32; 4]) -> AvInput {
        d.seed(3);
        AvInput {
            frames: Tensor::random([2, 4, 3, 32, 32], Distribution::Default, d),
            mel: Tensor::random([2, 1, 16, 16], Distribution::Default, d),
            presence: Tensor::from_data(TensorData::new(presence.to_vec(), [2, 2]), d),
        }
    }

    #[test]
    fn forward_shapes() {
        let d = Device::flex();
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .init(&d)
            .unwrap();
        assert_eq!(m.forward(input(&d, [1.0; 4])).dims(), [2, 1]);
    }

    #[test]
    fn absent_modality_input_never_changes_the_output() {
        // Eval (running statistics) and training (batch statistics from present samples
        // only, masked BatchNorm); head dropout off so training mode is deterministic.
        for d in [Device::flex(), Device::flex().autodiff()] {
            absent_input_is_ignored(&d);
        }
    }

    fn absent_input_is_ignored(d: &Device) {
        let d = d.clone();
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .with_head_dropout(0.0)
            .init(&d)
            .unwrap();
        // Sample 0: audio absent. Sample 1: video absent.
        let a = input(&d, [1.0, 0.0, 0.0, 1.0]);
        let mut b = a.clone();
        let noise_mel = Tensor::<4>::random([2, 1, 16, 16], Distribution::Default, &d);
        let noise_frames = Tensor::<5>::random([2, 4, 3, 32, 32], Distribution::Default, &d);
        // Change the absent audio of sample 0 and the absent video of sample 1.
        b.mel = Tensor::cat(
            vec![noise_mel.narrow(0, 0, 1), a.mel.clone().narrow(0, 1, 1)],
            0,
        );
        b.frames = Tensor::cat(
            vec![
                a.frames.clone().narrow(0, 0, 1),
                noise_frames.narrow(0, 1, 1),
            ],
            0,
        );
        let ya = m.forward(a).into_data().try_to_vec::<f32>().unwrap();
        let yb = m.forward(b).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(ya, yb);
    }

    #[test]
    fn unimodal_model_builds_and_runs() {
        let d = Device::flex();
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .with_enable_audio(false)
            .init(&d)
            .unwrap();
        assert_eq!(m.forward(input(&d, [1.0; 4])).dims(), [2, 1]);
        let e = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .with_enable_audio(false)
            .with_enable_video(false)
            .init(&d)
            .unwrap_err();
        assert!(e.to_string().contains("at least one modality"), "{e}");
    }
}

#[cfg(test)]
mod training_step {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn every_parameter_gets_a_gradient_and_adamw_moves_it() {
        let d = Device::flex().autodiff();
        d.seed(1);
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .init(&d)
            .unwrap();
        let input = AvInput {
            frames: Tensor::random([2, 4, 3, 32, 32], Distribution::Default, &d),
            mel: Tensor::random([2, 1, 16, 16], Distribution::Default, &d),
            presence: Tensor::from_data(TensorData::new(vec![1.0f32; 4], [2, 2]), &d),
        };
        let loss = m.forward(input).sum();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &m);
        let n_params = m
            .clone()
            .into_record()
            .into_bytes()
            .map(|b| b.len())
            .unwrap_or(0);
        assert!(n_params > 0);
        assert!(
            grads.len() >= 10,
            "only {} parameters got a gradient",
            grads.len()
        );
        let before = m.clone().into_record().into_bytes().unwrap().to_vec();
        let mut optim = burn::optim::AdamWConfig::new().init();
        let m2 = optim.step(1e-2, m, grads);
        let after = m2.clone().into_record().into_bytes().unwrap().to_vec();
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(changed > before.len() / 4);
    }
}

#[cfg(test)]
mod blanking {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, TensorData};

    /// Burn's random generator is process-global: these tests seed it and draw from it, so
    /// they take turns.
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Every float tensor (parameters and running statistics), in structural order.
    struct Collect(Vec<Vec<f32>>);

    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .push(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }

    /// Gradients of every parameter, in structural order (None where a parameter has none).
    struct Grads<'a>(&'a GradientsParams, Vec<Option<Vec<f32>>>);

    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.1.push(
                self.0
                    .get::<D>(param.id)
                    .map(|g| g.into_data().try_to_vec::<f32>().unwrap()),
            );
        }
    }

    /// Logits, per-parameter gradients, and every tensor after the step (running stats too).
    type Outcome = (Vec<f32>, Vec<Option<Vec<f32>>>, Vec<Vec<f32>>);

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 + 1e-4 * y.abs(),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    fn run(m: &AvModel, input: AvInput, blanking: Blanking) -> Outcome {
        let m = m.clone();
        let y = m.forward_with(input, blanking);
        let logits = y.clone().into_data().try_to_vec::<f32>().unwrap();
        let grads = GradientsParams::from_grads((y.clone() * y).sum().backward(), &m);
        let mut g = Grads(&grads, Vec::new());
        m.visit(&mut g);
        let mut stats = Collect(Vec::new());
        m.valid().visit(&mut stats);
        (logits, g.1, stats.0)
    }

    /// Design 2.3: `mask` and `compact` give the same outputs, gradients and running
    /// statistics in training mode; `zero_input` differs (its BatchNorm sees the zeros).
    #[test]
    fn mask_and_compact_agree_zero_input_does_not() {
        let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
        let d = Device::flex().autodiff();
        // A fresh, identical model per strategy (clones share their BatchNorm running state,
        // and the global RNG may be drawn by other tests): one record, loaded into new models.
        let cfg =
            AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new()).with_head_dropout(0.0);
        let bytes = cfg.init(&d).unwrap().into_record().into_bytes().unwrap();
        let model = || {
            let record = burn::store::ModuleRecord::from_bytes(bytes.clone()).unwrap();
            cfg.init(&d).unwrap().try_load_record(record).unwrap()
        };
        // [video, audio] per sample: both, video only, audio only, both, audio only.
        let presence = vec![1.0f32, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0];
        // Inputs from a fixed formula (not the global RNG, which other tests draw from).
        let wave =
            |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin() * 0.5).collect() };
        let input = || {
            let mut frames = Tensor::<5>::from_data(
                TensorData::new(wave(5 * 4 * 3 * 32 * 32, 0.37), [5, 4, 3, 32, 32]),
                &d,
            );
            let mut mel = Tensor::<4>::from_data(
                TensorData::new(wave(5 * 16 * 16, 0.11), [5, 1, 16, 16]),
                &d,
            );
            // Blanked inputs are zeros, as the loader writes them.
            let pv =
                Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0, 0.0], [5]), &d);
            let pa =
                Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0, 1.0, 1.0], [5]), &d);
            frames = frames * pv.reshape([5, 1, 1, 1, 1]);
            mel = mel * pa.reshape([5, 1, 1, 1]);
            AvInput {
                frames,
                mel,
                presence: Tensor::from_data(TensorData::new(presence.clone(), [5, 2]), &d),
            }
        };
        let (lm, gm, sm) = run(&model(), input(), Blanking::Mask);
        let (lc, gc, sc) = run(&model(), input(), Blanking::Compact);
        close(&lc, &lm, "logits");
        assert_eq!(gm.len(), gc.len());
        for (i, (a, b)) in gc.iter().zip(&gm).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => close(a, b, &format!("grad {i}")),
                (None, None) => {}
                _ => panic!("grad {i}: present in one strategy only"),
            }
        }
        for (i, (a, b)) in sc.iter().zip(&sm).enumerate() {
            close(
                a,
                b,
                &format!("tensor {i} after the step (running stats included)"),
            );
        }
        let (lz, _, _) = run(&model(), input(), Blanking::ZeroInput);
        let diff = lz
            .iter()
            .zip(&lm)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff > 1e-4,
            "zero_input should differ from mask (BatchNorm sees zeros), diff {diff}"
        );
    }

    /// Modality dropout's rescale: the clip stream (the per-modality temporal means) scales
    /// linearly with `feature_scale`, and 1 is exactly the unscaled forward.
    #[test]
    fn feature_scale_multiplies_the_modality_features() {
        let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
        let d = Device::flex();
        d.seed(5);
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .init(&d)
            .unwrap();
        let input = AvInput {
            frames: Tensor::random([2, 4, 3, 32, 32], Distribution::Default, &d),
            mel: Tensor::random([2, 1, 16, 16], Distribution::Default, &d),
            presence: Tensor::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0], [2, 2]), &d),
        };
        let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let base = vec(m.embed_with(input.clone(), Blanking::Mask));
        assert_eq!(
            vec(m.embed_scaled(input.clone(), Blanking::Mask, 1.0)),
            base
        );
        let scaled = vec(m.embed_scaled(input, Blanking::Mask, 1.5));
        let clip_dims = m.video.as_ref().map_or(0, |v| v.embed_dim())
            + m.audio.as_ref().map_or(0, |a| a.embed_dim());
        let width = base.len() / 2;
        for row in 0..2 {
            for k in 0..clip_dims {
                let (b, s) = (base[row * width + k], scaled[row * width + k]);
                assert!(
                    (s - 1.5 * b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "[{row}, {k}]: {s} vs 1.5 * {b}"
                );
            }
        }
        assert_ne!(scaled, base);
    }

    /// With no sample holding a modality, `compact` skips its encoder entirely.
    #[test]
    fn compact_skips_an_absent_modality() {
        let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
        let d = Device::flex().autodiff();
        d.seed(13);
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .with_head_dropout(0.0)
            .init(&d)
            .unwrap();
        let input = AvInput {
            frames: Tensor::zeros([2, 4, 3, 32, 32], &d),
            mel: Tensor::random([2, 1, 16, 16], Distribution::Default, &d),
            presence: Tensor::from_data(TensorData::new(vec![0.0f32, 1.0, 0.0, 1.0], [2, 2]), &d),
        };
        let (lc, gc, _) = run(&m, input.clone(), Blanking::Compact);
        let (lm, _, _) = run(&m, input, Blanking::Mask);
        close(&lc, &lm, "logits");
        // The video encoder's parameters got no gradient at all (it did not run).
        let video_ids = m.encoder_param_ids(Modality::Video);
        assert!(!video_ids.is_empty());
        let with_grad = gc.iter().filter(|g| g.is_some()).count();
        let mut all = Grads(&GradientsParams::new(), Vec::new());
        m.visit(&mut all);
        assert!(
            with_grad < all.1.len(),
            "some parameters (the video encoder's) have no gradient"
        );
    }
}
