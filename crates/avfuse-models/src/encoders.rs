//! Small convolutional encoders: one per video frame, one over the log-mel spectrogram.

use avfuse_nn::{MaskedBatchNorm, MaskedBatchNormConfig};
use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, invalid};

/// Side of the spatial grid the frame CNN pools to before its projection.
const FRAME_POOL: usize = 4;

/// Conv (no bias) -> masked BatchNorm -> ReLU: the layer both encoders stack. The BatchNorm
/// takes its statistics from present samples only (design 2.3), so samples whose modality is
/// missing or dropped neither pollute the running statistics nor the batch's normalisation.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    conv: Conv2d,
    norm: MaskedBatchNorm,
}

impl ConvBnRelu {
    fn new(conv: Conv2dConfig, device: &Device) -> Self {
        let c_out = conv.channels[1];
        Self {
            conv: conv.with_bias(false).init(device),
            norm: MaskedBatchNormConfig::new(c_out).init(device),
        }
    }

    /// `[N, C_in, H, W]` to `[N, C_out, H', W']`; `presence` `[N]` (1 present, 0 absent),
    /// `None` for all present. Absent samples come out as zeros.
    pub fn forward(&self, x: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<4> {
        let y = self.conv.forward(x);
        let y = match presence {
            Some(p) => self.norm.forward(y, p.clone()),
            None => self.norm.forward_all_present(y),
        };
        relu(y)
    }
}

/// Check the keys both encoder configs share; `prefix` is the config path.
fn validate_common(prefix: &str, channels: &[usize], embed_dim: usize) -> Result<(), ModelError> {
    if channels.is_empty() || channels.contains(&0) {
        return Err(invalid(
            &format!("{prefix}.channels"),
            channels,
            "must be a non-empty list of positive channel counts",
        ));
    }
    if embed_dim == 0 {
        return Err(invalid(
            &format!("{prefix}.embed_dim"),
            embed_dim,
            "must be >= 1",
        ));
    }
    Ok(())
}

/// Configuration of [`FrameCnn`], a small per-frame image encoder.
#[derive(Config, Debug)]
pub struct FrameCnnConfig {
    /// Input channels (3 for RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Output channels of each conv layer. The first layer is a 4x4 stride-4 patchify conv,
    /// the others 3x3 stride 2; each is followed by BatchNorm and a ReLU.
    #[config(default = "vec![16, 32, 32]")]
    pub channels: Vec<usize>,
    /// Size of the per-frame embedding.
    #[config(default = 32)]
    pub embed_dim: usize,
}

/// Per-frame CNN: `[N, C, H, W]` frames to `[N, embed_dim]` embeddings.
///
/// Patchify conv (4x4, stride 4), then 3x3 stride-2 convs, each followed by BatchNorm and a
/// ReLU, adaptive average pooling to a 4x4 grid (so any frame size >= 16 px works), flatten, a linear projection
/// and a ReLU.
#[derive(Module, Debug)]
pub struct FrameCnn {
    layers: Vec<ConvBnRelu>,
    pool: AdaptiveAvgPool2d,
    proj: Linear,
}

impl FrameCnnConfig {
    /// Check the configuration; `prefix` is its config path for error messages.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        validate_common(prefix, &self.channels, self.embed_dim)
    }

    /// Build the encoder on `device`. Call [`validate`](Self::validate) first.
    pub fn init(&self, device: &Device) -> FrameCnn {
        let mut layers = Vec::with_capacity(self.channels.len());
        let mut c_in = self.in_channels;
        for (i, &c_out) in self.channels.iter().enumerate() {
            let conv = if i == 0 {
                Conv2dConfig::new([c_in, c_out], [4, 4]).with_stride([4, 4])
            } else {
                Conv2dConfig::new([c_in, c_out], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            };
            layers.push(ConvBnRelu::new(conv, device));
            c_in = c_out;
        }
        FrameCnn {
            layers,
            pool: AdaptiveAvgPool2dConfig::new([FRAME_POOL, FRAME_POOL]).init(),
            proj: LinearConfig::new(c_in * FRAME_POOL * FRAME_POOL, self.embed_dim).init(device),
        }
    }
}

impl FrameCnn {
    /// `frames`: `[N, C, H, W]`, values roughly in [-0.5, 0.5]. Returns `[N, embed_dim]`.
    pub fn forward(&self, frames: Tensor<4>) -> Tensor<2> {
        self.forward_masked(frames, None)
    }

    /// Width of the embedding. Reads the shape without initialising the lazily initialised
    /// projection (forcing it early changes the order in which parameters draw from Burn's
    /// global RNG, hence the initial weights).
    pub fn embed_dim(&self) -> usize {
        self.proj.weight.lazy_shape()[1]
    }

    /// [`FrameCnn::forward`] with a `[N]` presence mask for the BatchNorm statistics.
    pub fn forward_masked(&self, frames: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<2> {
        let x = self
            .layers
            .iter()
            .fold(frames, |x, layer| layer.forward(x, presence));
        let x = self.pool.forward(x);
        relu(self.proj.forward(x.flatten::<2>(1, 3)))
    }
}

/// Configuration of [`MelCnn`], a small CNN over the log-mel spectrogram.
#[derive(Config, Debug)]
pub struct MelCnnConfig {
    /// Output channels of each 3x3 conv layer (stride 2 in frequency; stride 2 in time for
    /// the last `log2(mel_frames_per_step)` layers). Each is followed by BatchNorm and a ReLU.
    #[config(default = "vec![16, 32, 32]")]
    pub channels: Vec<usize>,
    /// Mel frames per output time step (a power of two, at most 2^layers). With 16 kHz audio,
    /// hop 160 and 25 fps video this is 4: one output step per video frame.
    #[config(default = 4)]
    pub mel_frames_per_step: usize,
    /// Size of the per-step embedding.
    #[config(default = 32)]
    pub embed_dim: usize,
}

/// Mel CNN: `[B, 1, n_mels, S * mel_frames_per_step]` to `[B, S, embed_dim]`, one embedding
/// per output step (per video frame), after averaging over frequency.
#[derive(Module, Debug)]
pub struct MelCnn {
    layers: Vec<ConvBnRelu>,
    proj: Linear,
}

impl MelCnnConfig {
    /// Check the configuration; `prefix` is its config path for error messages.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        validate_common(prefix, &self.channels, self.embed_dim)?;
        let f = self.mel_frames_per_step;
        if f == 0 || !f.is_power_of_two() || f.trailing_zeros() as usize > self.channels.len() {
            return Err(invalid(
                &format!("{prefix}.mel_frames_per_step"),
                f,
                &format!(
                    "must be a power of two between 1 and 2^{}",
                    self.channels.len()
                ),
            ));
        }
        Ok(())
    }

    /// Build the encoder on `device`. Call [`validate`](Self::validate) first.
    pub fn init(&self, device: &Device) -> MelCnn {
        let time_strided = self.mel_frames_per_step.trailing_zeros() as usize;
        let first_time_strided = self.channels.len() - time_strided;
        let mut layers = Vec::with_capacity(self.channels.len());
        let mut c_in = 1;
        for (i, &c_out) in self.channels.iter().enumerate() {
            let t_stride = if i >= first_time_strided { 2 } else { 1 };
            let conv = Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_stride([2, t_stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
            layers.push(ConvBnRelu::new(conv, device));
            c_in = c_out;
        }
        MelCnn {
            layers,
            proj: LinearConfig::new(c_in, self.embed_dim).init(device),
        }
    }
}

impl MelCnn {
    /// `mel`: `[B, 1, n_mels, S * mel_frames_per_step]`, normalised log-mel. Returns
    /// `[B, S, embed_dim]`.
    pub fn forward(&self, mel: Tensor<4>) -> Tensor<3> {
        self.forward_masked(mel, None)
    }

    /// Width of the embedding. Reads the shape without initialising the lazily initialised
    /// projection (forcing it early changes the order in which parameters draw from Burn's
    /// global RNG, hence the initial weights).
    pub fn embed_dim(&self) -> usize {
        self.proj.weight.lazy_shape()[1]
    }

    /// [`MelCnn::forward`] with a `[B]` presence mask for the BatchNorm statistics.
    pub fn forward_masked(&self, mel: Tensor<4>, presence: Option<&Tensor<1>>) -> Tensor<3> {
        let x = self
            .layers
            .iter()
            .fold(mel, |x, layer| layer.forward(x, presence));
        // [B, C, F', S] -> mean over frequency -> [B, C, S] -> [B, S, C]
        let x = x.mean_dim(2).squeeze_dim::<3>(2).swap_dims(1, 2);
        relu(self.proj.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn frame_cnn_shapes() {
        let d = Device::flex();
        let cnn = FrameCnnConfig::new().init(&d);
        let x = Tensor::<4>::random([5, 3, 64, 64], Distribution::Default, &d);
        assert_eq!(cnn.forward(x).dims(), [5, 32]);
        let x = Tensor::<4>::random([2, 3, 32, 32], Distribution::Default, &d);
        assert_eq!(cnn.forward(x).dims(), [2, 32]);
    }

    #[test]
    fn mel_cnn_gives_one_step_per_video_frame() {
        let d = Device::flex();
        let cnn = MelCnnConfig::new().init(&d);
        let x = Tensor::<4>::random([3, 1, 64, 64], Distribution::Default, &d);
        assert_eq!(cnn.forward(x).dims(), [3, 16, 32]);
    }

    #[test]
    fn invalid_configs_name_the_key() {
        let e = MelCnnConfig::new()
            .with_mel_frames_per_step(3)
            .validate("model.audio")
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("model.audio.mel_frames_per_step = 3:"),
            "{e}"
        );
        let e = FrameCnnConfig::new()
            .with_channels(vec![])
            .validate("model.video")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("model.video.channels = []"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod gradcheck {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    /// Finite-difference check of d(sum(out * w))/d(input) for an encoder closure.
    fn check<const D: usize>(shape: [usize; D], f: impl Fn(Tensor<D>) -> Tensor<1>) -> f64 {
        let d = Device::flex().autodiff();
        d.seed(7);
        let x = Tensor::<D>::random(shape, Distribution::Normal(0.0, 1.0), &d);
        let xd = x.clone().require_grad();
        let g = xd
            .grad(&f(xd.clone()).backward())
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let base = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let n = base.len();
        let eps = 1e-2f32;
        let mut worst = 0f64;
        for k in (0..n).step_by((n / 23).max(1)) {
            let eval = |delta: f32| {
                let mut v = base.clone();
                v[k] += delta;
                let t = Tensor::<D>::from_data(TensorData::new(v, shape), &d);
                f64::from(f(t).into_scalar::<f32>())
            };
            let fd = (eval(eps) - eval(-eps)) / (2.0 * f64::from(eps));
            let err =
                (fd - f64::from(g[k])).abs() / (fd.abs().max(f64::from(g[k]).abs()).max(1e-2));
            worst = worst.max(err);
        }
        worst
    }

    #[test]
    fn frame_cnn_input_gradient_matches_finite_differences() {
        let d = Device::flex().autodiff();
        d.seed(1);
        let cnn = FrameCnnConfig::new()
            .with_channels(vec![4, 6])
            .with_embed_dim(5)
            .init(&d);
        let w = Tensor::<2>::random([3, 5], Distribution::Normal(0.0, 1.0), &d);
        let worst = check([3, 3, 16, 16], |x| (cnn.forward(x) * w.clone()).sum());
        assert!(worst < 0.05, "relative error {worst}");
    }

    #[test]
    fn mel_cnn_input_gradient_matches_finite_differences() {
        let d = Device::flex().autodiff();
        d.seed(2);
        let cnn = MelCnnConfig::new()
            .with_channels(vec![4, 6])
            .with_embed_dim(5)
            .init(&d);
        let w = Tensor::<3>::random([2, 4, 5], Distribution::Normal(0.0, 1.0), &d);
        let worst = check([2, 1, 8, 16], |x| (cnn.forward(x) * w.clone()).sum());
        assert!(worst < 0.05, "relative error {worst}");
    }
}
