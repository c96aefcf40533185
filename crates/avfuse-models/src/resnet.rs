//! ResNet-18/34/50 frame encoders with torchvision's (and timm's) parameter names.
//!
//! The module tree mirrors `torchvision.models.resnet{18,34,50}` field for field, so a
//! torchvision or timm state dict loads by name through [`crate::weights::load_pretrained`]:
//!
//! ```text
//! conv1, bn1                                   7x7/2 stem conv + BatchNorm (+ ReLU, 3x3/2 max pool)
//! layer{1..4}.{i}.conv1 / bn1 / conv2 / bn2    BasicBlock (18, 34): 3x3 -> 3x3
//! layer{1..4}.{i}.conv3 / bn3                  Bottleneck (50): 1x1 -> 3x3 -> 1x1 (x4)
//! layer{2..4}.0.downsample.0 / .1              1x1 projection conv + BatchNorm of the shortcut
//! fc                                           the classifier (absent when num_classes is None)
//! ```
//!
//! Bottleneck blocks put the stride on the 3x3 conv (torchvision's "ResNet v1.5"). Every
//! BatchNorm is an [`avfuse_nn::MaskedBatchNorm`] (PyTorch's BatchNorm2d in eval mode; in
//! training, statistics from present samples only), so a frame encoder inside a multimodal
//! model can be run on a batch where some samples are blanked ([`ResNet::forward_masked`]).

use avfuse_nn::{MaskedBatchNorm, MaskedBatchNormConfig};
use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, invalid};

/// A 2-d convolution with symmetric padding `pad` and PyTorch's default layout
/// (`weight`: `[out, in / groups, k, k]`), initialised as torchvision and timm do:
/// Kaiming-normal weights over `fan_out` (`std = sqrt(2 / fan_out)`), zero bias.
pub(crate) fn conv2d(
    [c_in, c_out]: [usize; 2],
    kernel: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let mut conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_groups(groups)
        .with_bias(bias)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device);
    if bias {
        conv.bias = Some(Initializer::Zeros.init([c_out], device));
    }
    conv
}

/// A BatchNorm with PyTorch's defaults (eps 1e-5, momentum 0.1).
pub(crate) fn batch_norm(channels: usize, device: &Device) -> MaskedBatchNorm {
    MaskedBatchNormConfig::new(channels).init(device)
}

/// `[B, C, H, W]` through a masked BatchNorm: statistics over the samples with presence 1
/// (every sample when `presence` is `None`); absent samples come out as zeros.
pub(crate) fn norm(bn: &MaskedBatchNorm, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<4> {
    match presence {
        Some(p) => bn.forward(x, p.clone()),
        None => bn.forward_all_present(x),
    }
}

/// Global average pooling: `[B, C, H, W]` -> `[B, C]`.
pub(crate) fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([b, c])
}

/// Zero the rows of absent samples: `x` `[B, D]` times `presence` `[B]`.
pub(crate) fn mask_rows(x: Tensor<2>, presence: Option<&Tensor<1>>) -> Tensor<2> {
    match presence {
        Some(p) => {
            let [b] = p.dims();
            x * p.clone().reshape([b, 1])
        }
        None => x,
    }
}

/// Configuration of [`ResNet`].
#[derive(Config, Debug)]
pub struct ResNetConfig {
    /// 18 or 34 (BasicBlock) or 50 (Bottleneck).
    pub depth: usize,
    /// Size of the classifier `fc`; `None` builds no classifier (a feature extractor whose
    /// `forward` returns the pooled features).
    pub num_classes: Option<usize>,
    /// Input channels (3 for RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of the stem and of `layer1`'s blocks; each later stage doubles them
    /// (torchvision: 64). Bottleneck stages output 4x as many. Smaller values give a narrow
    /// ResNet of the same topology (tests, tiny models); pretrained torchvision/timm weights
    /// need 64.
    #[config(default = 64)]
    pub base_channels: usize,
}

impl ResNetConfig {
    /// Check the configuration; errors name the key under `model.video.backbone`.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !matches!(self.depth, 18 | 34 | 50) {
            return Err(invalid(
                "model.video.backbone.depth",
                self.depth,
                "must be 18, 34 or 50",
            ));
        }
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
        if self.base_channels == 0 {
            return Err(invalid(
                "model.video.backbone.base_channels",
                self.base_channels,
                "must be >= 1",
            ));
        }
        Ok(())
    }

    /// Width of the pooled features: `8 * base_channels` (512) for 18/34,
    /// `32 * base_channels` (2048) for 50.
    pub fn feature_dim(&self) -> usize {
        let expansion = if self.depth == 50 { 4 } else { 1 };
        self.base_channels * 8 * expansion
    }

    /// Build the network on `device` (weights initialised as torchvision: Kaiming-normal
    /// convs, BatchNorm gamma 1 / beta 0, PyTorch-default Linear).
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidConfig`] when [`validate`](Self::validate) fails.
    pub fn init(&self, device: &Device) -> Result<ResNet, ModelError> {
        self.validate()?;
        let (blocks, bottleneck): ([usize; 4], bool) = match self.depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            _ => ([3, 4, 6, 3], true),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let base = self.base_channels;
        let mut in_planes = base;
        let mut make_layer = |planes: usize, count: usize, stride: usize| {
            let mut layer = Vec::with_capacity(count);
            for i in 0..count {
                let s = if i == 0 { stride } else { 1 };
                layer.push(ResidualBlock::new(in_planes, planes, s, bottleneck, device));
                in_planes = planes * expansion;
            }
            layer
        };
        let layer1 = make_layer(base, blocks[0], 1);
        let layer2 = make_layer(base * 2, blocks[1], 2);
        let layer3 = make_layer(base * 4, blocks[2], 2);
        let layer4 = make_layer(base * 8, blocks[3], 2);
        Ok(ResNet {
            conv1: conv2d([self.in_channels, base], 7, 2, 3, 1, false, device),
            bn1: batch_norm(base, device),
            maxpool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            layer1,
            layer2,
            layer3,
            layer4,
            fc: self
                .num_classes
                .map(|n| LinearConfig::new(self.feature_dim(), n).init(device)),
        })
    }
}

/// One residual block: torchvision's `BasicBlock` (`conv3`/`bn3` absent) or `Bottleneck`.
///
/// BasicBlock: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, two 3x3 convs, the
/// first strided. Bottleneck: 1x1 (to `planes`) -> 3x3 strided -> 1x1 (to `4 * planes`).
/// The shortcut is the identity, or `downsample` (1x1 strided conv + BatchNorm) when the
/// stride or the channel count changes.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    conv1: Conv2d,
    bn1: MaskedBatchNorm,
    conv2: Conv2d,
    bn2: MaskedBatchNorm,
    conv3: Option<Conv2d>,
    bn3: Option<MaskedBatchNorm>,
    /// `downsample.0` (conv) and `downsample.1` (BatchNorm), as torchvision's `nn.Sequential`.
    downsample: Option<(Conv2d, MaskedBatchNorm)>,
}

impl ResidualBlock {
    fn new(
        in_planes: usize,
        planes: usize,
        stride: usize,
        bottleneck: bool,
        device: &Device,
    ) -> Self {
        let out = if bottleneck { planes * 4 } else { planes };
        let downsample = (stride != 1 || in_planes != out).then(|| {
            (
                conv2d([in_planes, out], 1, stride, 0, 1, false, device),
                batch_norm(out, device),
            )
        });
        if bottleneck {
            Self {
                conv1: conv2d([in_planes, planes], 1, 1, 0, 1, false, device),
                bn1: batch_norm(planes, device),
                conv2: conv2d([planes, planes], 3, stride, 1, 1, false, device),
                bn2: batch_norm(planes, device),
                conv3: Some(conv2d([planes, out], 1, 1, 0, 1, false, device)),
                bn3: Some(batch_norm(out, device)),
                downsample,
            }
        } else {
            Self {
                conv1: conv2d([in_planes, planes], 3, stride, 1, 1, false, device),
                bn1: batch_norm(planes, device),
                conv2: conv2d([planes, planes], 3, 1, 1, 1, false, device),
                bn2: batch_norm(planes, device),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }

    /// `[B, C_in, H, W]` -> `[B, C_out, H / stride, W / stride]` (rounded up).
    pub fn forward(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some((conv, bn)) => norm(bn, conv.forward(x.clone()), presence),
            None => x.clone(),
        };
        let y = relu(norm(&self.bn1, self.conv1.forward(x), presence));
        let y = norm(&self.bn2, self.conv2.forward(y), presence);
        let y = match (&self.conv3, &self.bn3) {
            (Some(conv3), Some(bn3)) => norm(bn3, conv3.forward(relu(y)), presence),
            _ => y,
        };
        relu(y + shortcut)
    }
}

/// ResNet-18/34/50 (torchvision layout; see the module docs for the parameter names).
///
/// Input `[B, in_channels, H, W]` (ImageNet weights expect RGB normalised with the ImageNet
/// mean/std); the feature map is downsampled 32x (`H / 32` rounded up) before global average
/// pooling. Any `H, W >= 1` works.
#[derive(Module, Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: MaskedBatchNorm,
    maxpool: MaxPool2d,
    layer1: Vec<ResidualBlock>,
    layer2: Vec<ResidualBlock>,
    layer3: Vec<ResidualBlock>,
    layer4: Vec<ResidualBlock>,
    fc: Option<Linear>,
}

impl ResNet {
    /// Logits `[B, num_classes]` for `x` `[B, in_channels, H, W]`; the pooled features
    /// `[B, feature_dim]` when the network has no classifier (`num_classes: None`).
    ///
    /// BatchNorm uses batch statistics in training (the module's training flag on and an
    /// autodiff device) and the running statistics otherwise, as PyTorch's `train()`/`eval()`.
    ///
    /// # Panics
    ///
    /// If `x` does not have `in_channels` channels (Burn's convolution checks the shape).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_masked(x, None)
    }

    /// [`forward`](Self::forward) with a `[B]` presence vector (1.0 present, 0.0 absent;
    /// `None`: all present). Every BatchNorm takes its statistics (and running-statistic
    /// updates) from the present samples only, and the rows of absent samples in the output
    /// are exact zeros, so an absent sample's input never affects any output.
    pub fn forward_masked(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<2> {
        let features = self.features_masked(x, presence);
        match &self.fc {
            Some(fc) => mask_rows(fc.forward(features), presence),
            None => features,
        }
    }

    /// Globally average-pooled features before `fc`: `[B, in_channels, H, W]` ->
    /// `[B, feature_dim]`.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        self.features_masked(x, None)
    }

    /// [`features`](Self::features) with a `[B]` presence vector (see
    /// [`forward_masked`](Self::forward_masked)); absent rows are zeros.
    pub fn features_masked(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<2> {
        let x = relu(norm(&self.bn1, self.conv1.forward(x), presence));
        let mut x = self.maxpool.forward(x);
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward(x, presence);
        }
        mask_rows(global_avg_pool(x), presence)
    }

    /// Width of the pooled features (512 for ResNet-18/34, 2048 for ResNet-50 at the
    /// standard width). Reads lazy shapes only (initialises nothing).
    pub fn feature_dim(&self) -> usize {
        let last = self.layer4.last().map(|b| match &b.conv3 {
            Some(conv3) => conv3.weight.lazy_shape()[0],
            None => b.conv2.weight.lazy_shape()[0],
        });
        last.unwrap_or(0)
    }

    /// Number of classifier outputs, `None` without a classifier.
    pub fn num_classes(&self) -> Option<usize> {
        self.fc.as_ref().map(|fc| fc.weight.lazy_shape()[1])
    }
}
