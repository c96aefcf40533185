//! The AV digits benchmark (issue 8): 10-class image / audio / fusion models built from the
//! library's parts, their seeded training loop, evaluation with any subset of modalities,
//! and the export a PyTorch baseline trains from (`bench/av_digits/torch_baseline.py`).
//!
//! # Models ([`DigitsNet`])
//! One small CNN per used modality ([`DigitCnn`]: 3x3 convs without bias, each followed by
//! [`MaskedBatchNorm`] with the modality's presence and a ReLU, then global average pooling),
//! the presence-masked embeddings concatenated (late fusion), and an MLP head
//! (`Linear -> ReLU -> Linear`, 10 logits). Variants ([`Variant`]):
//! (a) image only, (b) audio only, (c) fusion, (d) fusion trained with
//! [`ModalityDropout`] in sample mode (each sample loses one of its two modalities with
//! probability `p`, never both).
//!
//! # Training ([`train_variant`])
//! Cross-entropy, AdamW (PyTorch defaults set explicitly: betas 0.9/0.999, eps 1e-8,
//! decoupled weight decay), a per-step linear warm-up + cosine schedule
//! ([`crate::schedule::WarmupCosine`]), mini-batches in a seeded order per epoch
//! ([`plan_epoch`]). An absent modality (dropped in training, or left out at test time) has
//! presence 0 **and** a zeroed input. Everything random is drawn on the host from the seed
//! (orders, modality dropout masks) or from Burn's device RNG seeded right before the model
//! is built, whose parameters are all materialised at once in a fixed order
//! ([`DigitsNet::named_params`]); so a CPU run is a pure function of its inputs.
//!
//! # Export ([`write_export`])
//! One safetensors file with the three splits, the initial parameters of each requested
//! variant in PyTorch layout and naming, the per-epoch orders and presence masks, and the
//! configuration as JSON metadata: the baseline trains the same layers from the same
//! initial weights on the same batches.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use avfuse_media::av_digits::{AvDigits, AvDigitsSplit, N_CLASSES};
use avfuse_nn::modality_dropout::{DropMode, ModalityDropout};
use avfuse_nn::{MaskedBatchNorm, MaskedBatchNormConfig};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::schedule::WarmupCosine;

/// Column of the image modality in the `[B, 2]` presence mask.
pub const IMAGE: usize = 0;
/// Column of the audio modality in the `[B, 2]` presence mask.
pub const AUDIO: usize = 1;
/// Modality names in presence-column order.
pub const MODALITY_NAMES: [&str; 2] = ["image", "audio"];

/// The four models of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variant {
    /// (a) image encoder + head.
    ImageOnly,
    /// (b) audio encoder + head.
    AudioOnly,
    /// (c) both encoders, concatenation, head; trained with both modalities always.
    Fusion,
    /// (d) as (c), trained with modality dropout (sample mode).
    FusionDropout,
}

impl Variant {
    /// All variants, (a) to (d).
    pub const ALL: [Variant; 4] = [
        Variant::ImageOnly,
        Variant::AudioOnly,
        Variant::Fusion,
        Variant::FusionDropout,
    ];

    /// The letter of the issue: `a`, `b`, `c`, `d`.
    pub fn letter(self) -> &'static str {
        match self {
            Variant::ImageOnly => "a",
            Variant::AudioOnly => "b",
            Variant::Fusion => "c",
            Variant::FusionDropout => "d",
        }
    }

    /// The name used in reports, e.g. `d_fusion_modality_dropout`.
    pub fn name(self) -> &'static str {
        match self {
            Variant::ImageOnly => "a_image_only",
            Variant::AudioOnly => "b_audio_only",
            Variant::Fusion => "c_fusion",
            Variant::FusionDropout => "d_fusion_modality_dropout",
        }
    }

    /// Parse a letter (`a`-`d`) or a [`name`](Self::name).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.letter() == s || v.name() == s)
    }

    /// Presence columns of the modalities this variant encodes, in encoder order.
    pub fn modalities(self) -> &'static [usize] {
        match self {
            Variant::ImageOnly => &[IMAGE],
            Variant::AudioOnly => &[AUDIO],
            Variant::Fusion | Variant::FusionDropout => &[IMAGE, AUDIO],
        }
    }

    /// The test inputs worth reporting: the unimodal models on their own modality, the
    /// fusion models on all three.
    pub fn test_inputs(self) -> &'static [TestInputs] {
        match self {
            Variant::ImageOnly => &[TestInputs::ImageOnly],
            Variant::AudioOnly => &[TestInputs::AudioOnly],
            Variant::Fusion | Variant::FusionDropout => &TestInputs::ALL,
        }
    }
}

/// Which modalities are present at evaluation time (an absent one is zeroed with presence 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TestInputs {
    /// Image and audio.
    Both,
    /// Image only (audio absent).
    ImageOnly,
    /// Audio only (image absent).
    AudioOnly,
}

impl TestInputs {
    /// All three sets.
    pub const ALL: [TestInputs; 3] = [
        TestInputs::Both,
        TestInputs::ImageOnly,
        TestInputs::AudioOnly,
    ];

    /// `both`, `image_only`, `audio_only`.
    pub fn name(self) -> &'static str {
        match self {
            TestInputs::Both => "both",
            TestInputs::ImageOnly => "image_only",
            TestInputs::AudioOnly => "audio_only",
        }
    }

    /// Presence `[image, audio]` (1 present, 0 absent).
    pub fn presence(self) -> [u8; 2] {
        match self {
            TestInputs::Both => [1, 1],
            TestInputs::ImageOnly => [1, 0],
            TestInputs::AudioOnly => [0, 1],
        }
    }
}

// ------------------------------------------------------------------------------ layers

/// 3x3 conv (padding 1, no bias) -> [`MaskedBatchNorm`] -> ReLU.
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// The convolution, weight `[C_out, C_in, 3, 3]`.
    pub conv: Conv2d,
    /// BatchNorm over the present samples.
    pub bn: MaskedBatchNorm,
}

impl ConvBlock {
    /// `[B, C_in, H, W]` and presence `[B]` to `[B, C_out, H', W']`; absent samples give 0.
    pub fn forward(&self, x: Tensor<4>, presence: Tensor<1>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x), presence))
    }
}

/// Configuration of [`DigitCnn`].
#[derive(Config, Debug)]
pub struct DigitCnnConfig {
    /// Output channels of each conv block (the embedding width is the last one).
    #[config(default = "vec![8, 16, 32]")]
    pub channels: Vec<usize>,
    /// Stride of each conv block (same stride in both axes), one per block.
    #[config(default = "vec![2, 2, 2]")]
    pub strides: Vec<usize>,
}

impl DigitCnnConfig {
    /// Check the configuration; `prefix` names it in messages.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        if self.channels.is_empty() || self.channels.contains(&0) {
            return Err(TrainError::Config(format!(
                "{prefix}.channels = {:?}: must be a non-empty list of positive counts",
                self.channels
            )));
        }
        if self.strides.len() != self.channels.len() || self.strides.contains(&0) {
            return Err(TrainError::Config(format!(
                "{prefix}.strides = {:?}: need one positive stride per conv block ({})",
                self.strides,
                self.channels.len()
            )));
        }
        Ok(())
    }

    /// Build the encoder (one input channel).
    pub fn init(&self, device: &Device) -> DigitCnn {
        let mut c_in = 1;
        let layers = self
            .channels
            .iter()
            .zip(&self.strides)
            .map(|(&c_out, &s)| {
                let block = ConvBlock {
                    conv: Conv2dConfig::new([c_in, c_out], [3, 3])
                        .with_stride([s, s])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .with_bias(false)
                        .init(device),
                    bn: MaskedBatchNormConfig::new(c_out).init(device),
                };
                c_in = c_out;
                block
            })
            .collect();
        DigitCnn { layers }
    }

    /// Width of the embedding (the last block's channels).
    pub fn embed_dim(&self) -> usize {
        self.channels.last().copied().unwrap_or(0)
    }
}

/// Small CNN encoder: `[B, 1, H, W]` to a `[B, C]` embedding (conv blocks, then the mean over
/// the spatial positions). Any `H, W >= 1` works.
#[derive(Module, Debug)]
pub struct DigitCnn {
    /// The conv blocks.
    pub layers: Vec<ConvBlock>,
}

impl DigitCnn {
    /// `x`: `[B, 1, H, W]`, `presence`: `[B]` of 0/1. Returns `[B, C_last]`, zero rows for
    /// absent samples.
    pub fn forward(&self, x: Tensor<4>, presence: Tensor<1>) -> Tensor<2> {
        let y = self
            .layers
            .iter()
            .fold(x, |x, layer| layer.forward(x, presence.clone()));
        let [b, c, _, _] = y.dims();
        y.mean_dim(3).mean_dim(2).reshape([b, c])
    }
}

/// Configuration of [`DigitsNet`].
#[derive(Config, Debug)]
pub struct DigitsNetConfig {
    /// The image encoder over the `[H, W]` image.
    pub image: DigitCnnConfig,
    /// The audio encoder over the `[n_mels, frames]` log-mel.
    pub audio: DigitCnnConfig,
    /// Hidden width of the MLP head.
    #[config(default = 64)]
    pub hidden: usize,
    /// Number of classes.
    #[config(default = 10)]
    pub classes: usize,
}

impl DigitsNetConfig {
    /// The benchmark's layers: image and audio encoders `[8, 16, 32]` channels, strides
    /// `[2, 2, 2]` (28 x 28 -> 4 x 4, 32 x 51 -> 4 x 7 before pooling), head 64 hidden units,
    /// 10 classes. Small on purpose: the CPU benchmark trains six models in minutes.
    pub fn standard() -> Self {
        Self::new(DigitCnnConfig::new(), DigitCnnConfig::new())
    }

    /// Check every field.
    pub fn validate(&self) -> Result<()> {
        self.image.validate("model.image")?;
        self.audio.validate("model.audio")?;
        if self.hidden == 0 || self.classes < 2 {
            return Err(TrainError::Config(format!(
                "model: hidden = {} must be >= 1 and classes = {} >= 2",
                self.hidden, self.classes
            )));
        }
        Ok(())
    }

    fn encoder(&self, modality: usize) -> &DigitCnnConfig {
        if modality == IMAGE {
            &self.image
        } else {
            &self.audio
        }
    }

    /// Build the network for `variant` (its encoders in [`Variant::modalities`] order).
    pub fn init(&self, variant: Variant, device: &Device) -> DigitsNet {
        let encoders: Vec<DigitCnn> = variant
            .modalities()
            .iter()
            .map(|&m| self.encoder(m).init(device))
            .collect();
        let embed: usize = variant
            .modalities()
            .iter()
            .map(|&m| self.encoder(m).embed_dim())
            .sum();
        DigitsNet {
            encoders,
            hidden: LinearConfig::new(embed, self.hidden).init(device),
            out: LinearConfig::new(self.hidden, self.classes).init(device),
        }
    }
}

/// A parameter or buffer in PyTorch layout (`Linear` weights `[out, in]`), named as in
/// `torch_baseline.py`'s modules.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Dotted name, e.g. `encoders.0.layers.1.bn.running_var`.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

fn host<const D: usize>(t: Tensor<D>) -> Result<(Vec<usize>, Vec<f32>)> {
    let shape = t.dims().to_vec();
    let v = t
        .into_data()
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Device(format!("cannot read a tensor back: {e:?}")))?;
    Ok((shape, v))
}

fn named<const D: usize>(out: &mut Vec<NamedTensor>, name: String, t: Tensor<D>) -> Result<()> {
    let (shape, data) = host(t)?;
    out.push(NamedTensor { name, shape, data });
    Ok(())
}

fn linear_params(out: &mut Vec<NamedTensor>, prefix: &str, l: &Linear) -> Result<()> {
    // Burn stores [in, out]; PyTorch [out, in].
    named(out, format!("{prefix}.weight"), l.weight.val().transpose())?;
    if let Some(b) = &l.bias {
        named(out, format!("{prefix}.bias"), b.val())?;
    }
    Ok(())
}

/// Late-fusion classifier: per-modality [`DigitCnn`]s, presence-masked embeddings
/// concatenated, `Linear -> ReLU -> Linear` head.
#[derive(Module, Debug)]
pub struct DigitsNet {
    /// One encoder per used modality, in [`Variant::modalities`] order.
    pub encoders: Vec<DigitCnn>,
    /// First head layer, `[sum of embedding widths] -> hidden`.
    pub hidden: Linear,
    /// Output layer, `hidden -> classes`.
    pub out: Linear,
}

impl DigitsNet {
    /// `inputs[k]`: `[B, 1, H_k, W_k]` for encoder `k` (zeros for absent samples);
    /// `presence`: `[B, K]`, column `k` the presence (0/1) of encoder `k`'s modality.
    /// Returns logits `[B, classes]`.
    pub fn forward(&self, inputs: Vec<Tensor<4>>, presence: Tensor<2>) -> Tensor<2> {
        let [b, _] = presence.dims();
        let embeddings: Vec<Tensor<2>> = self
            .encoders
            .iter()
            .zip(inputs)
            .enumerate()
            .map(|(k, (enc, x))| {
                let p = presence.clone().narrow(1, k, 1); // [B, 1]
                enc.forward(x, p.clone().reshape([b])) * p
            })
            .collect();
        let fused = Tensor::cat(embeddings, 1);
        self.out.forward(relu(self.hidden.forward(fused)))
    }

    /// Every parameter and BatchNorm buffer, in PyTorch layout and naming, in a fixed order.
    ///
    /// Called right after [`DigitsNetConfig::init`], it also materialises Burn's lazily
    /// initialised parameters in this order, so the initial weights do not depend on
    /// anything else the caller does first.
    pub fn named_params(&self) -> Result<Vec<NamedTensor>> {
        let mut out = Vec::new();
        for (k, enc) in self.encoders.iter().enumerate() {
            for (j, l) in enc.layers.iter().enumerate() {
                let p = format!("encoders.{k}.layers.{j}");
                named(&mut out, format!("{p}.conv.weight"), l.conv.weight.val())?;
                named(&mut out, format!("{p}.bn.weight"), l.bn.gamma.val())?;
                named(&mut out, format!("{p}.bn.bias"), l.bn.beta.val())?;
                named(
                    &mut out,
                    format!("{p}.bn.running_mean"),
                    l.bn.running_mean.value(),
                )?;
                named(
                    &mut out,
                    format!("{p}.bn.running_var"),
                    l.bn.running_var.value(),
                )?;
            }
        }
        linear_params(&mut out, "hidden", &self.hidden)?;
        linear_params(&mut out, "out", &self.out)?;
        Ok(out)
    }
}

// ------------------------------------------------------------------------------ training

/// Hyper-parameters of one training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs (default 8).
    pub epochs: usize,
    /// Mini-batch size (default 64; the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Peak learning rate (default 2e-3).
    pub lr: f64,
    /// Final learning rate of the cosine (default 0).
    pub min_lr: f64,
    /// Linear warm-up, in epochs (default 0.5), counted in optimiser steps.
    pub warmup_epochs: f64,
    /// AdamW decoupled weight decay (default 1e-2, PyTorch's).
    pub weight_decay: f64,
    /// AdamW beta1 (0.9).
    pub beta1: f64,
    /// AdamW beta2 (0.999).
    pub beta2: f64,
    /// AdamW epsilon (1e-8, PyTorch's).
    pub eps: f64,
    /// Seed of the initial weights, the batch orders and the modality dropout masks.
    pub seed: u64,
    /// Modality dropout probability of variant (d) (default 0.5): a sample is hit with this
    /// probability and then loses one of its two modalities, chosen uniformly.
    pub modality_dropout_p: f64,
    /// Batch size of evaluation (default 500).
    pub eval_batch_size: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 8,
            batch_size: 64,
            lr: 2e-3,
            min_lr: 0.0,
            warmup_epochs: 0.5,
            weight_decay: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            seed: 0,
            modality_dropout_p: 0.5,
            eval_batch_size: 500,
        }
    }
}

impl TrainConfig {
    /// Check every field; the message names it.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad(format!(
                "epochs = {}, batch_size = {}, eval_batch_size = {}: all must be >= 1",
                self.epochs, self.batch_size, self.eval_batch_size
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr = {}: must be > 0", self.lr));
        }
        if !(self.min_lr.is_finite() && (0.0..=self.lr).contains(&self.min_lr)) {
            return bad(format!("min_lr = {}: must be in [0, lr]", self.min_lr));
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return bad(format!(
                "warmup_epochs = {}: must be >= 0",
                self.warmup_epochs
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay = {}: must be >= 0",
                self.weight_decay
            ));
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) {
            return bad(format!(
                "betas = ({}, {}): must be in [0, 1)",
                self.beta1, self.beta2
            ));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps = {}: must be > 0", self.eps));
        }
        if !(0.0..=1.0).contains(&self.modality_dropout_p) {
            return bad(format!(
                "modality_dropout_p = {}: must be in [0, 1]",
                self.modality_dropout_p
            ));
        }
        Ok(())
    }

    /// Optimiser steps per epoch for `n` training samples.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size)
    }

    /// The learning-rate schedule for `n` training samples.
    pub fn schedule(&self, n: usize) -> WarmupCosine {
        let spe = self.steps_per_epoch(n);
        WarmupCosine {
            base_lr: self.lr,
            min_lr: self.min_lr,
            warmup_steps: (self.warmup_epochs * spe as f64).round() as usize,
            total_steps: self.epochs * spe,
        }
    }
}

/// What one epoch trains on: the visiting order and each sample's training presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochPlan {
    /// Sample indices in visiting order (a permutation of `0..n`); batches are consecutive
    /// chunks of `batch_size`.
    pub order: Vec<u32>,
    /// Presence `[image, audio]` of each sample **by sample index** (not by position).
    pub presence: Vec<[u8; 2]>,
    /// How many samples lost each modality.
    pub dropped: [usize; 2],
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The plan of `epoch` (1-based) for `n` samples: a ChaCha8 shuffle seeded by
/// `(seed, epoch)` (the same for every variant), and, for [`Variant::FusionDropout`],
/// [`ModalityDropout`] in sample mode with `p = modality_dropout_p`, a pure function of
/// `(seed, epoch, sample index)` that never blanks both modalities of a sample.
pub fn plan_epoch(
    n: usize,
    epoch: usize,
    variant: Variant,
    cfg: &TrainConfig,
) -> Result<EpochPlan> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(mix(
        cfg.seed ^ 0xD161_7500
    ) ^ epoch as u64)));
    let mut presence = vec![vec![1u8, 1]; n];
    let mut dropped = [0usize; 2];
    if variant == Variant::FusionDropout {
        let md = ModalityDropout::new(cfg.modality_dropout_p, DropMode::Sample, None, 0, false)
            .map_err(|e| TrainError::Config(format!("modality_dropout_p: {e}")))?;
        let ids: Vec<u64> = (0..n as u64).collect();
        let counts = md.apply(&mut presence, &ids, cfg.seed, epoch as u64, 0);
        dropped = [counts[IMAGE], counts[AUDIO]];
    }
    Ok(EpochPlan {
        order,
        presence: presence.iter().map(|p| [p[0], p[1]]).collect(),
        dropped,
    })
}

/// One batch on the host: inputs of the variant's encoders (zeros where absent), the
/// `[B, K]` presence in encoder order, labels.
struct HostBatch {
    inputs: Vec<(Vec<f32>, [usize; 4])>,
    presence: Vec<f32>,
    labels: Vec<i64>,
}

fn host_batch(
    split: &AvDigitsSplit,
    idx: &[u32],
    variant: Variant,
    presence_of: impl Fn(usize) -> [u8; 2],
) -> HostBatch {
    let b = idx.len();
    let mods = variant.modalities();
    let mut presence = Vec::with_capacity(b * mods.len());
    for &i in idx {
        let p = presence_of(i as usize);
        presence.extend(mods.iter().map(|&m| f32::from(p[m])));
    }
    let inputs = mods
        .iter()
        .map(|&m| {
            let (len, hw, src) = if m == IMAGE {
                (split.image_len(), split.image_hw, &split.images)
            } else {
                (split.mel_len(), split.mel_shape, &split.mels)
            };
            let mut buf = vec![0.0f32; b * len];
            for (row, &i) in idx.iter().enumerate() {
                if presence_of(i as usize)[m] != 0 {
                    let i = i as usize;
                    buf[row * len..(row + 1) * len].copy_from_slice(&src[i * len..(i + 1) * len]);
                }
            }
            (buf, [b, 1, hw[0], hw[1]])
        })
        .collect();
    HostBatch {
        inputs,
        presence,
        labels: idx
            .iter()
            .map(|&i| i64::from(split.labels[i as usize]))
            .collect(),
    }
}

impl HostBatch {
    fn upload(self, device: &Device) -> (Vec<Tensor<4>>, Tensor<2>, Tensor<1, Int>) {
        let b = self.labels.len();
        let k = self.presence.len() / b.max(1);
        let inputs = self
            .inputs
            .into_iter()
            .map(|(v, shape)| Tensor::<4>::from_data(TensorData::new(v, shape), device))
            .collect();
        let presence = Tensor::<2>::from_data(TensorData::new(self.presence, [b, k]), device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(self.labels, [b]), device);
        (inputs, presence, labels)
    }
}

/// Progress of [`train_variant`], reported after every optimiser step.
#[derive(Clone, Debug)]
pub struct StepProgress {
    /// The variant being trained.
    pub variant: Variant,
    /// Epoch, 1-based.
    pub epoch: usize,
    /// Epochs of the run.
    pub epochs: usize,
    /// Samples done in this epoch.
    pub samples_done: usize,
    /// Samples per epoch.
    pub samples: usize,
    /// This step's mean cross-entropy.
    pub loss: f64,
    /// Learning rate of this step.
    pub lr: f64,
}

/// What [`train_variant`] returns.
#[derive(Debug)]
pub struct Trained {
    /// The variant.
    pub variant: Variant,
    /// The trained model, switched to evaluation ([`Module::valid`]).
    pub model: DigitsNet,
    /// Mean training cross-entropy of each epoch.
    pub epoch_loss: Vec<f64>,
    /// Cross-entropy of the very first batch (before any update): compare with the baseline.
    pub first_loss: f64,
    /// Samples that lost each modality over the run (modality dropout).
    pub dropped: [usize; 2],
    /// Wall time of the training loop in seconds.
    pub seconds: f64,
}

/// Build `variant`'s model on `device` seeded with `seed`, with every parameter
/// materialised; returns it and its initial parameters in PyTorch layout.
pub fn init_model(
    variant: Variant,
    net: &DigitsNetConfig,
    seed: u64,
    device: &Device,
) -> Result<(DigitsNet, Vec<NamedTensor>)> {
    net.validate()?;
    device.seed(seed);
    let model = net.init(variant, device);
    let params = model.named_params()?;
    Ok((model, params))
}

/// Train `variant` on `train` (see the module docs). `device` is a plain device; the
/// autodiff wrapper is added here. `on_step` is called after every step.
pub fn train_variant(
    train: &AvDigitsSplit,
    variant: Variant,
    net: &DigitsNetConfig,
    cfg: &TrainConfig,
    device: &Device,
    on_step: &mut dyn FnMut(&StepProgress),
) -> Result<Trained> {
    cfg.validate()?;
    train.check()?;
    let n = train.len();
    if n == 0 {
        return Err(TrainError::Config("av_digits: empty training split".into()));
    }
    let ad = device.clone().autodiff();
    let (mut model, _) = init_model(variant, net, cfg.seed, &ad)?;
    let mut optim = AdamWConfig::new()
        .with_beta_1(cfg.beta1 as f32)
        .with_beta_2(cfg.beta2 as f32)
        .with_epsilon(cfg.eps as f32)
        .with_weight_decay(cfg.weight_decay as f32)
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let schedule = cfg.schedule(n);
    let started = Instant::now();
    let (mut step, mut first_loss, mut dropped) = (0usize, f64::NAN, [0usize; 2]);
    let mut epoch_loss = Vec::with_capacity(cfg.epochs);
    for epoch in 1..=cfg.epochs {
        let plan = plan_epoch(n, epoch, variant, cfg)?;
        dropped[0] += plan.dropped[0];
        dropped[1] += plan.dropped[1];
        tracing::debug!(
            variant = variant.name(),
            epoch,
            image_dropped = plan.dropped[0],
            audio_dropped = plan.dropped[1],
            "modality dropout"
        );
        let (mut sum, mut done) = (0.0f64, 0usize);
        for idx in plan.order.chunks(cfg.batch_size) {
            let batch = host_batch(train, idx, variant, |i| plan.presence[i]);
            let (inputs, presence, labels) = batch.upload(&ad);
            let logits = model.forward(inputs, presence);
            let loss = loss_fn.forward(logits, labels);
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step,
                    loss: value,
                });
            }
            if step == 0 {
                first_loss = value;
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = schedule.lr(step);
            model = optim.step(lr, model, grads);
            step += 1;
            sum += value * idx.len() as f64;
            done += idx.len();
            on_step(&StepProgress {
                variant,
                epoch,
                epochs: cfg.epochs,
                samples_done: done,
                samples: n,
                loss: value,
                lr,
            });
        }
        epoch_loss.push(sum / n as f64);
        tracing::info!(
            variant = variant.name(),
            epoch,
            loss = sum / n as f64,
            "epoch done"
        );
    }
    Ok(Trained {
        variant,
        model: model.valid(),
        epoch_loss,
        first_loss,
        dropped,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Predicted classes of `model` (trained as `variant`, in evaluation mode) on `split` with
/// `inputs` present; absent modalities are zeroed with presence 0.
pub fn predict(
    model: &DigitsNet,
    variant: Variant,
    split: &AvDigitsSplit,
    inputs: TestInputs,
    batch_size: usize,
    device: &Device,
) -> Result<Vec<u8>> {
    split.check()?;
    let device = device.clone().without_autodiff();
    let pres = inputs.presence();
    let all: Vec<u32> = (0..split.len() as u32).collect();
    let mut out = Vec::with_capacity(split.len());
    for idx in all.chunks(batch_size.max(1)) {
        let (x, p, _) = host_batch(split, idx, variant, |_| pres).upload(&device);
        let (shape, logits) = host(model.forward(x, p))?;
        let c = shape.get(1).copied().unwrap_or(N_CLASSES).max(1);
        out.extend(logits.chunks(c).map(|row| {
            row.iter()
                .enumerate()
                .fold((0usize, f32::NEG_INFINITY), |best, (k, &v)| {
                    if v > best.1 { (k, v) } else { best }
                })
                .0 as u8
        }));
    }
    Ok(out)
}

/// Accuracy in `[0, 1]` of `model` on `split` with `inputs` present (see [`predict`]).
pub fn accuracy(
    model: &DigitsNet,
    variant: Variant,
    split: &AvDigitsSplit,
    inputs: TestInputs,
    batch_size: usize,
    device: &Device,
) -> Result<f64> {
    let pred = predict(model, variant, split, inputs, batch_size, device)?;
    let right = pred
        .iter()
        .zip(&split.labels)
        .filter(|(p, l)| p == l)
        .count();
    Ok(right as f64 / split.len().max(1) as f64)
}

// ------------------------------------------------------------------------------ export

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write everything the PyTorch baseline needs into one safetensors file at `path`:
///
/// - `{train,val,test}.image` F32 `[N, 1, H, W]`, `.mel` F32 `[N, 1, n_mels, frames]`,
///   `.label` I64 `[N]` (standardised, exactly what [`train_variant`] sees);
/// - `plan.order` I64 `[epochs, N_train]` and, per variant, `plan.<letter>.presence` F32
///   `[epochs, N_train, 2]` (by sample index);
/// - `init.<letter>.<name>` F32: the initial parameters and buffers of each variant
///   ([`DigitsNet::named_params`]);
/// - metadata `config` (JSON): the train config, the layer config, the variants, and the
///   data build settings.
pub fn write_export(
    path: &Path,
    data: &AvDigits,
    variants: &[Variant],
    net: &DigitsNetConfig,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<()> {
    cfg.validate()?;
    let ser = |e: safetensors::SafeTensorError| TrainError::Data {
        path: path.to_path_buf(),
        detail: format!("cannot write the export: {e}"),
    };
    // Owned (name, dtype, shape, bytes), then views into them.
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for s in [&data.train, &data.val, &data.test] {
        s.check()?;
        let (n, [h, w], [m, f]) = (s.len(), s.image_hw, s.mel_shape);
        let name = s.split.name();
        owned.push((
            format!("{name}.image"),
            safetensors::Dtype::F32,
            vec![n, 1, h, w],
            f32_bytes(&s.images),
        ));
        owned.push((
            format!("{name}.mel"),
            safetensors::Dtype::F32,
            vec![n, 1, m, f],
            f32_bytes(&s.mels),
        ));
        owned.push((
            format!("{name}.label"),
            safetensors::Dtype::I64,
            vec![n],
            s.labels
                .iter()
                .flat_map(|&l| i64::from(l).to_le_bytes())
                .collect(),
        ));
    }
    let n = data.train.len();
    let mut order = Vec::with_capacity(cfg.epochs * n * 8);
    let mut presence: Vec<Vec<u8>> = vec![Vec::new(); variants.len()];
    for epoch in 1..=cfg.epochs {
        for (k, &v) in variants.iter().enumerate() {
            let plan = plan_epoch(n, epoch, v, cfg)?;
            if k == 0 {
                order.extend(plan.order.iter().flat_map(|&i| i64::from(i).to_le_bytes()));
            }
            presence[k].extend(
                plan.presence
                    .iter()
                    .flat_map(|p| p.map(f32::from))
                    .flat_map(f32::to_le_bytes),
            );
        }
    }
    owned.push((
        "plan.order".into(),
        safetensors::Dtype::I64,
        vec![cfg.epochs, n],
        order,
    ));
    let ad = device.clone().autodiff();
    for (k, &v) in variants.iter().enumerate() {
        owned.push((
            format!("plan.{}.presence", v.letter()),
            safetensors::Dtype::F32,
            vec![cfg.epochs, n, 2],
            std::mem::take(&mut presence[k]),
        ));
        let (_, params) = init_model(v, net, cfg.seed, &ad)?;
        for p in params {
            owned.push((
                format!("init.{}.{}", v.letter(), p.name),
                safetensors::Dtype::F32,
                p.shape,
                f32_bytes(&p.data),
            ));
        }
    }
    let meta = serde_json::json!({
        "train": cfg,
        "model": {
            "image": {"channels": net.image.channels, "strides": net.image.strides},
            "audio": {"channels": net.audio.channels, "strides": net.audio.strides},
            "hidden": net.hidden,
            "classes": net.classes,
        },
        "variants": variants.iter().map(|v| v.letter()).collect::<Vec<_>>(),
        "schedule": cfg.schedule(n),
        "data": {
            "build": data.config,
            "image_norm": data.image_norm,
            "mel_norm": data.mel_norm,
        },
    });
    let views = owned
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(ser)?;
    let info = HashMap::from([("config".to_string(), meta.to_string())]);
    safetensors::serialize_to_file(views, Some(info), path).map_err(ser)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_and_name() {
        for v in Variant::ALL {
            assert_eq!(Variant::parse(v.letter()), Some(v));
            assert_eq!(Variant::parse(v.name()), Some(v));
        }
        assert_eq!(Variant::parse("e"), None);
        assert_eq!(TestInputs::AudioOnly.presence(), [0, 1]);
    }

    #[test]
    fn config_errors_name_the_field() {
        let c = TrainConfig {
            modality_dropout_p: 1.5,
            ..TrainConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("modality_dropout_p = 1.5"), "{e}");
        let mut net = DigitsNetConfig::standard();
        net.image = DigitCnnConfig::new().with_strides(vec![1]);
        let e = net.validate().unwrap_err().to_string();
        assert!(e.contains("model.image.strides"), "{e}");
    }
}
