//! EfficientNet-B0 frame encoder with timm's `efficientnet_b0` parameter names.
//!
//! The module tree mirrors timm's `EfficientNet` so a timm state dict loads by name through
//! [`crate::weights::load_pretrained`]:
//!
//! ```text
//! conv_stem, bn1                      3x3/2 stem conv (3 -> 32) + BatchNorm + SiLU
//! blocks.0.0.{conv_dw, bn1, se.conv_reduce, se.conv_expand, conv_pw, bn2}
//!                                     depthwise-separable block (32 -> 16)
//! blocks.{1..6}.{j}.{conv_pw, bn1, conv_dw, bn2, se.conv_reduce, se.conv_expand, conv_pwl, bn3}
//!                                     inverted-residual (MBConv) blocks
//! conv_head, bn2                      1x1 conv (320 -> 1280) + BatchNorm + SiLU
//! classifier                          Linear(1280, num_classes), absent when num_classes is None
//! ```
//!
//! Stages (timm's arch_def for B0: type, repeats, kernel, first stride, expansion, channels):
//! `ds 1 k3 s1 e1 c16`, `ir 2 k3 s2 e6 c24`, `ir 2 k5 s2 e6 c40`, `ir 3 k3 s2 e6 c80`,
//! `ir 3 k5 s1 e6 c112`, `ir 4 k5 s2 e6 c192`, `ir 1 k3 s1 e6 c320`. Every conv uses
//! symmetric PyTorch padding `((stride - 1) + (k - 1)) / 2` (timm's `get_padding`, which is
//! what `efficientnet_b0` uses; the TF-ported `tf_efficientnet_b0` pads "same" asymmetrically
//! instead and is not this network). Squeeze-excite reduces to
//! `round(mid_channels * 0.25 / expansion)` channels (0.25 of the block's input channels,
//! timm's rounding), with SiLU and a sigmoid gate. Activations are SiLU; the last BatchNorm of
//! each block has none. A block with stride 1 and equal input/output channels adds its input
//! (after drop-path, training only). Dropout (`drop_rate`) precedes the classifier, training
//! only. Every BatchNorm is an [`avfuse_nn::MaskedBatchNorm`].

use avfuse_nn::MaskedBatchNorm;
use avfuse_nn::dropout::{DropPath, DropPathConfig, Dropout, DropoutConfig};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Device;
use burn::tensor::Tensor;
use burn::tensor::activation::{sigmoid, silu};

use crate::error::{ModelError, invalid};
use crate::resnet::{batch_norm, conv2d, global_avg_pool, mask_rows, norm};

/// Channels of the stem conv.
const STEM_CHANNELS: usize = 32;
/// Channels of the 1x1 head conv (the pooled feature width).
const HEAD_CHANNELS: usize = 1280;
/// Squeeze-excite ratio relative to the block's input channels.
const SE_RATIO: f64 = 0.25;

/// One stage of timm's B0 arch_def.
struct Stage {
    inverted_residual: bool,
    repeats: usize,
    kernel: usize,
    stride: usize,
    expansion: usize,
    channels: usize,
}

const B0_STAGES: [Stage; 7] = [
    Stage {
        inverted_residual: false,
        repeats: 1,
        kernel: 3,
        stride: 1,
        expansion: 1,
        channels: 16,
    },
    Stage {
        inverted_residual: true,
        repeats: 2,
        kernel: 3,
        stride: 2,
        expansion: 6,
        channels: 24,
    },
    Stage {
        inverted_residual: true,
        repeats: 2,
        kernel: 5,
        stride: 2,
        expansion: 6,
        channels: 40,
    },
    Stage {
        inverted_residual: true,
        repeats: 3,
        kernel: 3,
        stride: 2,
        expansion: 6,
        channels: 80,
    },
    Stage {
        inverted_residual: true,
        repeats: 3,
        kernel: 5,
        stride: 1,
        expansion: 6,
        channels: 112,
    },
    Stage {
        inverted_residual: true,
        repeats: 4,
        kernel: 5,
        stride: 2,
        expansion: 6,
        channels: 192,
    },
    Stage {
        inverted_residual: true,
        repeats: 1,
        kernel: 3,
        stride: 1,
        expansion: 6,
        channels: 320,
    },
];

/// timm's `get_padding(kernel, stride, dilation=1)`: symmetric PyTorch padding.
fn timm_padding(kernel: usize, stride: usize) -> usize {
    ((stride - 1) + (kernel - 1)) / 2
}

/// timm's `make_divisible(v, divisor=8)`: round to the nearest multiple of 8, never more than
/// 10 % below `v`.
fn make_divisible(v: f64) -> usize {
    let divisor = 8.0;
    let mut new_v = ((v + divisor / 2.0) / divisor).floor() * divisor;
    new_v = new_v.max(divisor);
    if new_v < 0.9 * v {
        new_v += divisor;
    }
    new_v as usize
}

/// Python's `round` (ties to even), as timm's squeeze-excite uses for its reduced width.
fn round_half_even(v: f64) -> usize {
    v.round_ties_even().max(1.0) as usize
}

/// Configuration of [`EfficientNet`] in its B0 variant (timm `efficientnet_b0`).
#[derive(Config, Debug)]
pub struct EfficientNetB0Config {
    /// Size of the classifier; `None` builds no classifier (a feature extractor whose
    /// `forward` returns the pooled 1280-wide features).
    pub num_classes: Option<usize>,
    /// Input channels (3 for RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Dropout probability before the classifier (timm's `drop_rate`, 0.2 for B0); training
    /// only.
    #[config(default = 0.2)]
    pub drop_rate: f64,
    /// Stochastic-depth rate (timm's `drop_path_rate`): block `i` of the 16 drops its
    /// residual branch with probability `drop_path_rate * i / 16`; training only.
    #[config(default = 0.0)]
    pub drop_path_rate: f64,
}

impl EfficientNetB0Config {
    /// Check the configuration; errors name the key under `model.video.backbone`.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.num_classes == Some(0) {
            return Err(invalid(
                "model.video.backbone.num_classes",
                self.num_classes,
                "must be >= 1 (or absent for no classifier)",
            ));
        }
        if self.in_channels == 0 {
            return Err(invalid(
                "model.video.backbone.in_channels",
                self.in_channels,
                "must be >= 1",
            ));
        }
        for (key, p) in [
            ("model.video.backbone.drop_rate", self.drop_rate),
            ("model.video.backbone.drop_path_rate", self.drop_path_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid(key, p, "must be between 0 and 1"));
            }
        }
        Ok(())
    }

    /// Width of the pooled features (1280).
    pub fn feature_dim(&self) -> usize {
        HEAD_CHANNELS
    }

    /// Build the network on `device`, initialised as timm does for convs (normal with
    /// `std = sqrt(2 / fan_out)`, zero bias); BatchNorm gamma 1 / beta 0; PyTorch-default
    /// Linear.
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidConfig`] when [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> Result<EfficientNet, ModelError> {
        self.validate()?;
        let total: usize = B0_STAGES.iter().map(|s| s.repeats).sum();
        let mut index = 0;
        let mut c_in = STEM_CHANNELS;
        let mut blocks = Vec::with_capacity(B0_STAGES.len());
        for stage in &B0_STAGES {
            let mut stack = Vec::with_capacity(stage.repeats);
            for j in 0..stage.repeats {
                let stride = if j == 0 { stage.stride } else { 1 };
                let drop_path = drop_path(self.drop_path_rate * index as f64 / total as f64)?;
                let block = if stage.inverted_residual {
                    MbBlock::InvertedResidual(InvertedResidual::new(
                        c_in, stage, stride, drop_path, device,
                    ))
                } else {
                    MbBlock::DepthwiseSeparable(DepthwiseSeparable::new(
                        c_in, stage, stride, drop_path, device,
                    ))
                };
                stack.push(block);
                c_in = stage.channels;
                index += 1;
            }
            blocks.push(stack);
        }
        let dropout = DropoutConfig::new(self.drop_rate).init().map_err(|e| {
            invalid(
                "model.video.backbone.drop_rate",
                self.drop_rate,
                &e.to_string(),
            )
        })?;
        Ok(EfficientNet {
            conv_stem: conv2d(
                [self.in_channels, STEM_CHANNELS],
                3,
                2,
                timm_padding(3, 2),
                1,
                false,
                device,
            ),
            bn1: batch_norm(STEM_CHANNELS, device),
            blocks,
            conv_head: conv2d([c_in, HEAD_CHANNELS], 1, 1, 0, 1, false, device),
            bn2: batch_norm(HEAD_CHANNELS, device),
            dropout,
            classifier: self
                .num_classes
                .map(|n| LinearConfig::new(HEAD_CHANNELS, n).init(device)),
        })
    }
}

fn drop_path(p: f64) -> Result<DropPath, ModelError> {
    DropPathConfig::new(p)
        .init()
        .map_err(|e| invalid("model.video.backbone.drop_path_rate", p, &e.to_string()))
}

/// Squeeze-and-excite: `x * sigmoid(conv_expand(silu(conv_reduce(mean_hw(x)))))`.
#[derive(Module, Debug)]
pub struct SqueezeExcite {
    conv_reduce: Conv2d,
    conv_expand: Conv2d,
}

impl SqueezeExcite {
    fn new(channels: usize, reduced: usize, device: &Device) -> Self {
        Self {
            conv_reduce: conv2d([channels, reduced], 1, 1, 0, 1, true, device),
            conv_expand: conv2d([reduced, channels], 1, 1, 0, 1, true, device),
        }
    }

    /// `[B, C, H, W]` -> `[B, C, H, W]`, each channel scaled by its per-sample gate in (0, 1).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = x.clone().mean_dim(3).mean_dim(2); // [B, C, 1, 1]
        let s = silu(self.conv_reduce.forward(s));
        let gate = sigmoid(self.conv_expand.forward(s));
        x * gate
    }
}

/// timm's `DepthwiseSeparableConv` (stage 0 of B0): depthwise kxk conv, BatchNorm + SiLU,
/// squeeze-excite, pointwise 1x1 conv, BatchNorm (no activation), residual when the shape is
/// kept.
#[derive(Module, Debug)]
pub struct DepthwiseSeparable {
    conv_dw: Conv2d,
    bn1: MaskedBatchNorm,
    se: SqueezeExcite,
    conv_pw: Conv2d,
    bn2: MaskedBatchNorm,
    drop_path: DropPath,
    has_skip: bool,
}

impl DepthwiseSeparable {
    fn new(
        c_in: usize,
        stage: &Stage,
        stride: usize,
        drop_path: DropPath,
        device: &Device,
    ) -> Self {
        let k = stage.kernel;
        let reduced = round_half_even(c_in as f64 * SE_RATIO);
        Self {
            conv_dw: conv2d(
                [c_in, c_in],
                k,
                stride,
                timm_padding(k, stride),
                c_in,
                false,
                device,
            ),
            bn1: batch_norm(c_in, device),
            se: SqueezeExcite::new(c_in, reduced, device),
            conv_pw: conv2d([c_in, stage.channels], 1, 1, 0, 1, false, device),
            bn2: batch_norm(stage.channels, device),
            drop_path,
            has_skip: stride == 1 && c_in == stage.channels,
        }
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, H / stride, W / stride]`.
    pub fn forward(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<4> {
        let shortcut = self.has_skip.then(|| x.clone());
        let y = silu(norm(&self.bn1, self.conv_dw.forward(x), presence));
        let y = self.se.forward(y);
        let y = norm(&self.bn2, self.conv_pw.forward(y), presence);
        match shortcut {
            Some(s) => self.drop_path.forward(y) + s,
            None => y,
        }
    }
}

/// timm's `InvertedResidual` (MBConv): pointwise expansion 1x1 conv, BatchNorm + SiLU,
/// depthwise kxk conv, BatchNorm + SiLU, squeeze-excite, pointwise linear 1x1 projection,
/// BatchNorm (no activation), residual when the shape is kept.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    conv_pw: Conv2d,
    bn1: MaskedBatchNorm,
    conv_dw: Conv2d,
    bn2: MaskedBatchNorm,
    se: SqueezeExcite,
    conv_pwl: Conv2d,
    bn3: MaskedBatchNorm,
    drop_path: DropPath,
    has_skip: bool,
}

impl InvertedResidual {
    fn new(
        c_in: usize,
        stage: &Stage,
        stride: usize,
        drop_path: DropPath,
        device: &Device,
    ) -> Self {
        let k = stage.kernel;
        let mid = make_divisible(c_in as f64 * stage.expansion as f64);
        // timm divides the SE ratio by the expansion and applies it to the mid channels.
        let reduced = round_half_even(mid as f64 * (SE_RATIO / stage.expansion as f64));
        Self {
            conv_pw: conv2d([c_in, mid], 1, 1, 0, 1, false, device),
            bn1: batch_norm(mid, device),
            conv_dw: conv2d(
                [mid, mid],
                k,
                stride,
                timm_padding(k, stride),
                mid,
                false,
                device,
            ),
            bn2: batch_norm(mid, device),
            se: SqueezeExcite::new(mid, reduced, device),
            conv_pwl: conv2d([mid, stage.channels], 1, 1, 0, 1, false, device),
            bn3: batch_norm(stage.channels, device),
            drop_path,
            has_skip: stride == 1 && c_in == stage.channels,
        }
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, H / stride, W / stride]`.
    pub fn forward(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<4> {
        let shortcut = self.has_skip.then(|| x.clone());
        let y = silu(norm(&self.bn1, self.conv_pw.forward(x), presence));
        let y = silu(norm(&self.bn2, self.conv_dw.forward(y), presence));
        let y = self.se.forward(y);
        let y = norm(&self.bn3, self.conv_pwl.forward(y), presence);
        match shortcut {
            Some(s) => self.drop_path.forward(y) + s,
            None => y,
        }
    }
}

/// One block of [`EfficientNet`]. The variant name is not part of the PyTorch key
/// (`blocks.1.0.conv_pw.weight`): the loader skips enum variants.
// The variants differ by one conv + BatchNorm (a few hundred bytes, 16 blocks in all); Burn's
// Module derive has no `Box<T>` support to even them out.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum MbBlock {
    /// Stage 0.
    DepthwiseSeparable(DepthwiseSeparable),
    /// Stages 1-6.
    InvertedResidual(InvertedResidual),
}

impl MbBlock {
    /// `[B, C_in, H, W]` -> `[B, C_out, H / stride, W / stride]`.
    pub fn forward(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<4> {
        match self {
            MbBlock::DepthwiseSeparable(b) => b.forward(x, presence),
            MbBlock::InvertedResidual(b) => b.forward(x, presence),
        }
    }
}

/// EfficientNet-B0 (timm layout; see the module docs for the parameter names).
///
/// Input `[B, in_channels, H, W]` (ImageNet weights expect RGB normalised with the ImageNet
/// mean/std); downsampled 32x before global average pooling. Any `H, W >= 1` works.
#[derive(Module, Debug)]
pub struct EfficientNet {
    conv_stem: Conv2d,
    bn1: MaskedBatchNorm,
    blocks: Vec<Vec<MbBlock>>,
    conv_head: Conv2d,
    bn2: MaskedBatchNorm,
    dropout: Dropout,
    classifier: Option<Linear>,
}

impl EfficientNet {
    /// Logits `[B, num_classes]` for `x` `[B, in_channels, H, W]`; the pooled features
    /// `[B, 1280]` when the network has no classifier.
    ///
    /// BatchNorm, dropout and drop-path act as in training when the module's training flags
    /// are on and the device has autodiff, as in eval otherwise (PyTorch's `train()`/`eval()`).
    ///
    /// # Panics
    ///
    /// If `x` does not have `in_channels` channels (Burn's convolution checks the shape).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_masked(x, None)
    }

    /// [`forward`](Self::forward) with a `[B]` presence vector (1.0 present, 0.0 absent;
    /// `None`: all present): BatchNorm statistics from present samples only, absent rows of
    /// the output exact zeros.
    pub fn forward_masked(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<2> {
        let features = self.features_masked(x, presence);
        match &self.classifier {
            Some(fc) => mask_rows(fc.forward(self.dropout.forward(features)), presence),
            None => features,
        }
    }

    /// Globally average-pooled features before the classifier (and its dropout):
    /// `[B, in_channels, H, W]` -> `[B, 1280]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        self.features_masked(x, None)
    }

    /// [`features`](Self::features) with a `[B]` presence vector; absent rows are zeros.
    pub fn features_masked(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<2> {
        let mut x = silu(norm(&self.bn1, self.conv_stem.forward(x), presence));
        for block in self.blocks.iter().flatten() {
            x = block.forward(x, presence);
        }
        let x = silu(norm(&self.bn2, self.conv_head.forward(x), presence));
        mask_rows(global_avg_pool(x), presence)
    }

    /// Width of the pooled features (1280). Reads lazy shapes only.
    pub fn feature_dim(&self) -> usize {
        self.conv_head.weight.lazy_shape()[0]
    }

    /// Number of classifier outputs, `None` without a classifier.
    pub fn num_classes(&self) -> Option<usize> {
        self.classifier.as_ref().map(|fc| fc.weight.lazy_shape()[1])
    }
}
