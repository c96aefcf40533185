//! ResNet-style 2-d CNN over the log-mel spectrogram, with presence-masked BatchNorm.

use avfuse_nn::{MaskedBatchNorm, MaskedBatchNormConfig, mask_batch};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, invalid};
use crate::head::check_positive;

/// Configuration of [`AudioResNet`].
#[derive(Config, Debug)]
pub struct AudioResNetConfig {
    /// Output channels of the stem (a 3x3 conv, stride 2 in frequency, 1 in time).
    #[config(default = 16)]
    pub stem_channels: usize,
    /// Channels of each stage. Stage 0 keeps the resolution; every later stage halves the
    /// frequency axis (stride 2 in its first block).
    #[config(default = "vec![16, 32, 64, 128]")]
    pub widths: Vec<usize>,
    /// BasicBlocks per stage (one entry per stage, each >= 1; ResNet-18 is `[2, 2, 2, 2]`).
    #[config(default = "vec![1, 1, 1, 1]")]
    pub blocks: Vec<usize>,
    /// Mel frames per output time step: a power of two, at most `2^stages`. The last
    /// `log2(mel_frames_per_step)` stages stride 2 in time. With 16 kHz audio, hop 160 and
    /// 25 fps video this is 4: one output step per video frame (as [`crate::MelCnn`]).
    #[config(default = 4)]
    pub mel_frames_per_step: usize,
    /// Size of the per-step embedding.
    #[config(default = 128)]
    pub embed_dim: usize,
}

impl AudioResNetConfig {
    /// Check every field; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        check_positive(&format!("{prefix}.stem_channels"), self.stem_channels)?;
        check_positive(&format!("{prefix}.embed_dim"), self.embed_dim)?;
        if self.widths.is_empty() || self.widths.contains(&0) {
            return Err(invalid(
                &format!("{prefix}.widths"),
                &self.widths,
                "must be a non-empty list of positive channel counts",
            ));
        }
        if self.blocks.len() != self.widths.len() || self.blocks.contains(&0) {
            return Err(invalid(
                &format!("{prefix}.blocks"),
                &self.blocks,
                &format!(
                    "must hold one count >= 1 per stage ({} stages in {prefix}.widths)",
                    self.widths.len()
                ),
            ));
        }
        let f = self.mel_frames_per_step;
        if f == 0 || !f.is_power_of_two() || f.trailing_zeros() as usize > self.widths.len() {
            return Err(invalid(
                &format!("{prefix}.mel_frames_per_step"),
                f,
                &format!(
                    "must be a power of two between 1 and 2^{}",
                    self.widths.len()
                ),
            ));
        }
        Ok(())
    }

    /// Validate (keys under `model.audio`) and build the encoder on `device`.
    pub fn init(&self, device: &Device) -> Result<AudioResNet, ModelError> {
        self.validate("model.audio")?;
        let n_stages = self.widths.len();
        let first_time_strided = n_stages - self.mel_frames_per_step.trailing_zeros() as usize;
        let stem = Conv2dConfig::new([1, self.stem_channels], [3, 3])
            .with_stride([2, 1])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(device);
        let mut blocks = Vec::new();
        let mut c_in = self.stem_channels;
        for (i, (&width, &n)) in self.widths.iter().zip(&self.blocks).enumerate() {
            for j in 0..n {
                let stride = if j == 0 {
                    [
                        if i > 0 { 2 } else { 1 },
                        if i >= first_time_strided { 2 } else { 1 },
                    ]
                } else {
                    [1, 1]
                };
                blocks.push(BasicBlock::new(c_in, width, stride, device));
                c_in = width;
            }
        }
        Ok(AudioResNet {
            stem,
            stem_norm: MaskedBatchNormConfig::new(self.stem_channels).init(device),
            blocks,
            proj: LinearConfig::new(c_in, self.embed_dim).init(device),
        })
    }
}

fn conv3x3(c_in: usize, c_out: usize, stride: [usize; 2], device: &Device) -> Conv2d {
    Conv2dConfig::new([c_in, c_out], [3, 3])
        .with_stride(stride)
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .init(device)
}

/// Masked BatchNorm with an optional presence (`None`: every sample present).
fn norm<const D: usize>(
    bn: &MaskedBatchNorm,
    x: Tensor<D>,
    presence: Option<&Tensor<1>>,
) -> Tensor<D> {
    match presence {
        Some(p) => bn.forward(x, p.clone()),
        None => bn.forward_all_present(x),
    }
}

/// The 1x1 conv + BatchNorm shortcut of a [`BasicBlock`] that changes shape.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    norm: MaskedBatchNorm,
}

/// ResNet BasicBlock (torchvision layout): `relu(bn2(conv2(relu(bn1(conv1(x))))) + sc(x))`,
/// 3x3 convs without bias, `sc` the identity or a strided 1x1 conv + BatchNorm when the
/// shape changes. Every BatchNorm is a [`MaskedBatchNorm`].
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: MaskedBatchNorm,
    conv2: Conv2d,
    bn2: MaskedBatchNorm,
    downsample: Option<Downsample>,
}

impl BasicBlock {
    fn new(c_in: usize, c_out: usize, stride: [usize; 2], device: &Device) -> Self {
        let downsample = (c_in != c_out || stride != [1, 1]).then(|| Downsample {
            conv: Conv2dConfig::new([c_in, c_out], [1, 1])
                .with_stride(stride)
                .with_bias(false)
                .init(device),
            norm: MaskedBatchNormConfig::new(c_out).init(device),
        });
        Self {
            conv1: conv3x3(c_in, c_out, stride, device),
            bn1: MaskedBatchNormConfig::new(c_out).init(device),
            conv2: conv3x3(c_out, c_out, [1, 1], device),
            bn2: MaskedBatchNormConfig::new(c_out).init(device),
            downsample,
        }
    }

    /// `[N, C_in, F, T]` to `[N, C_out, F', T']`; `presence` `[N]` for the BatchNorm
    /// statistics (`None`: all present). Absent samples come out as zeros.
    pub fn forward(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(ds) => norm(&ds.norm, ds.conv.forward(x.clone()), presence),
            None => x.clone(),
        };
        let y = relu(norm(&self.bn1, self.conv1.forward(x), presence));
        let y = norm(&self.bn2, self.conv2.forward(y), presence);
        relu(y + shortcut)
    }
}

/// Audio ResNet: `[B, 1, n_mels, S * mel_frames_per_step]` log-mel to per-step embeddings
/// `[B, S, embed_dim]`.
///
/// Stem (3x3 conv, stride 2 in frequency, masked BatchNorm, ReLU), then the stages of
/// [`BasicBlock`]s, the mean over the remaining frequency bins, and a linear projection with a
/// ReLU per time step (as [`crate::MelCnn`], so either can feed the same temporal encoder).
/// `n_mels` must be at least `2^stages` (64 mels and 4 stages leave 4 bins); the time axis
/// must be a multiple of `mel_frames_per_step`.
#[derive(Module, Debug)]
pub struct AudioResNet {
    stem: Conv2d,
    stem_norm: MaskedBatchNorm,
    blocks: Vec<BasicBlock>,
    proj: Linear,
}

impl AudioResNet {
    /// `mel`: `[B, 1, n_mels, S * mel_frames_per_step]`, normalised log-mel. Returns
    /// `[B, S, embed_dim]` (every sample present).
    pub fn forward(&self, mel: Tensor<4>) -> Tensor<3> {
        self.forward_masked(mel, None)
    }

    /// Width of the embedding. Reads the shape without initialising the lazy projection.
    pub fn embed_dim(&self) -> usize {
        self.proj.weight.lazy_shape()[1]
    }

    /// [`AudioResNet::forward`] with a `[B]` presence mask (1 present, 0 absent): the
    /// BatchNorm statistics come from present samples only (design 2.3, the `mask` path) and
    /// absent samples' embeddings are exactly zero, whatever their (finite) input.
    pub fn forward_masked(&self, mel: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<3> {
        let x = relu(norm(&self.stem_norm, self.stem.forward(mel), presence));
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward(x, presence));
        // [B, C, F', S] -> mean over frequency -> [B, C, S] -> [B, S, C]
        let x = x.mean_dim(2).squeeze_dim::<3>(2).swap_dims(1, 2);
        let y = relu(self.proj.forward(x));
        match presence {
            Some(p) => mask_batch(y, p.clone()),
            None => y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn one_step_per_video_frame() {
        let d = Device::flex();
        let net = AudioResNetConfig::new()
            .with_widths(vec![8, 8, 16])
            .with_blocks(vec![1, 2, 1])
            .with_embed_dim(12)
            .init(&d)
            .unwrap();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..2 * 32 * 40)
                    .map(|i| (i as f32 * 0.37).sin())
                    .collect::<Vec<_>>(),
                [2, 1, 32, 40],
            ),
            &d,
        );
        assert_eq!(net.forward(x).dims(), [2, 10, 12]);
        assert_eq!(net.embed_dim(), 12);
    }

    #[test]
    fn invalid_configs_name_the_key() {
        let e = AudioResNetConfig::new()
            .with_blocks(vec![1, 1])
            .validate("model.audio")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("model.audio.blocks = [1, 1]"),
            "{e}"
        );
        let e = AudioResNetConfig::new()
            .with_mel_frames_per_step(32)
            .validate("model.audio")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("model.audio.mel_frames_per_step = 32"),
            "{e}"
        );
    }
}
