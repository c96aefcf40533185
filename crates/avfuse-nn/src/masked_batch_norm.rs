//! Masked BatchNorm: batch normalisation over the **present** samples of a batch only
//! (design section 2.3, the `mask` path).
//!
//! A multi-stream network whose stream is blanked for some samples (modality dropout, a
//! clip without an audio track) must not let those samples' zeros into the stream's
//! BatchNorm statistics. [`MaskedBatchNorm`] takes a per-sample presence vector next to the
//! activations and behaves, for the present samples, exactly like a plain BatchNorm run on
//! the present subset, while absent samples come out as exact zeros.
//!
//! It is written with masked reductions only (multiply by the broadcast presence mask, sum,
//! divide by the count): no gather/scatter copies, the batch keeps its shape, and the whole
//! computation stays on the device (no host synchronisation). Gradients come from Burn's
//! autodiff through those operations.

use burn::config::Config;
use burn::module::RunningState;
use burn::module::{Content, DisplaySettings, Flag, Initializer, Module, ModuleDisplay, Param};
use burn::tensor::{Device, Tensor};

/// Errors of [`MaskedBatchNorm::try_forward`]: shape mismatches, i.e. programming errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskedBatchNormError {
    /// The input has fewer than two dimensions (it needs `[B, C, ...]`).
    #[error("masked batch norm needs an input of rank >= 2 ([B, C, ...]), got rank {rank}")]
    RankTooLow {
        /// Rank of the input.
        rank: usize,
    },
    /// The input's channel axis (axis 1) does not match the layer's `num_features`.
    #[error("masked batch norm has {expected} features but the input has {got} channels (axis 1)")]
    ChannelMismatch {
        /// The layer's `num_features`.
        expected: usize,
        /// The input's size along axis 1.
        got: usize,
    },
    /// The presence vector does not have one entry per sample.
    #[error("presence has {presence} entries but the batch has {batch} samples")]
    PresenceLength {
        /// Number of entries of the presence vector.
        presence: usize,
        /// Batch size (axis 0 of the input).
        batch: usize,
    },
}

/// Configuration of [`MaskedBatchNorm`] (same fields and defaults as Burn's
/// `BatchNormConfig`).
#[derive(Config, Debug)]
pub struct MaskedBatchNormConfig {
    /// The number of features (channels, axis 1 of the input). Must be greater than zero.
    pub num_features: usize,
    /// Added to the variance for numerical stability; finite and positive. Default: 1e-5.
    #[config(default = 1e-5)]
    pub epsilon: f64,
    /// Momentum of the running statistics, finite and in `[0, 1]`. Default: 0.1.
    ///
    /// `running = (1 - momentum) * running + momentum * batch_stat` (PyTorch's convention).
    #[config(default = 0.1)]
    pub momentum: f64,
}

impl MaskedBatchNormConfig {
    /// Build the layer: `gamma = 1`, `beta = 0`, `running_mean = 0`, `running_var = 1`,
    /// training flag on.
    ///
    /// # Panics
    ///
    /// Like Burn's `BatchNormConfig::init`: if `num_features` is zero, `epsilon` is not finite
    /// and positive, or `momentum` is not finite and within `[0, 1]` (configuration errors of
    /// the program, not of the data).
    pub fn init(&self, device: &Device) -> MaskedBatchNorm {
        assert!(
            self.num_features > 0,
            "num_features must be greater than zero."
        );
        assert!(
            self.epsilon.is_finite() && self.epsilon > 0.0,
            "epsilon must be finite and positive."
        );
        assert!(
            self.momentum.is_finite() && (0.0..=1.0).contains(&self.momentum),
            "momentum must be finite and within [0, 1]."
        );
        MaskedBatchNorm {
            gamma: Initializer::Ones.init([self.num_features], device),
            beta: Initializer::Zeros.init([self.num_features], device),
            training: Param::from_bool(true),
            running_mean: RunningState::new(Tensor::zeros([self.num_features], device)),
            running_var: RunningState::new(Tensor::ones([self.num_features], device)),
            momentum: self.momentum,
            epsilon: self.epsilon,
        }
    }
}

/// Batch normalisation over the present samples of a batch.
///
/// Input `x`: `[B, C]`, `[B, C, L]`, `[B, C, H, W]` or `[B, C, D, H, W]` (any rank >= 2;
/// axis 1 is the channel axis), and `presence`: `[B]`, 1.0 for a present sample, 0.0 for an
/// absent one. Output: the shape of `x`.
///
/// Write `m_b` for the presence of sample `b`, `S` for the number of positions per channel
/// (`L`, `H*W` or `D*H*W`; 1 for `[B, C]`) and `n = S * sum_b m_b`.
///
/// **Training** (the `training` flag on **and** the input on an autodiff device, the gate of
/// Burn's own `BatchNorm`/`Dropout`), per channel `c`:
///
/// ```text
/// mean_c = sum_{b,s} m_b x_{b,c,s} / max(n, 1)
/// var_c  = sum_{b,s} m_b (x_{b,c,s} - mean_c)^2 / max(n, 1)            (biased)
/// y_{b,c,s} = m_b * (gamma_c (x_{b,c,s} - mean_c) / sqrt(var_c + eps) + beta_c)
/// ```
///
/// so present samples get exactly plain BatchNorm on the present subset and absent samples
/// exact zeros (their input gradient is zero too; gamma/beta gradients equal those of plain
/// BatchNorm on the subset). The running statistics are then updated from the present
/// samples, PyTorch style, outside the autodiff graph:
///
/// ```text
/// running_mean = (1 - momentum) running_mean + momentum mean
/// running_var  = (1 - momentum) running_var  + momentum var * n / (n - 1)   (unbiased)
/// ```
///
/// the update being skipped (left unchanged) when fewer than 2 samples are present. With no
/// sample present the output is all zeros, gradients are zero and nothing is NaN.
///
/// **Eval** (flag off, or a device without autodiff):
/// `y = m_b * (gamma (x - running_mean) / sqrt(running_var + eps) + beta)`.
///
/// With `presence` all ones this is PyTorch's `BatchNorm{1,2,3}d` (unbiased running
/// variance; Burn's `BatchNorm` stores the biased one). The fields are named as in Burn's
/// `BatchNorm`, so a record of one loads into the other.
///
/// Presence values other than 0 and 1 are not checked (that would need a host read); they
/// give a weighted normalisation, not a documented behaviour. Absent samples are multiplied by
/// zero, so they must hold finite values (NaN * 0 is NaN).
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct MaskedBatchNorm {
    /// The learnable scale gamma, `[C]`.
    pub gamma: Param<Tensor<1>>,
    /// The learnable shift beta, `[C]`.
    pub beta: Param<Tensor<1>>,
    /// Whether training behaviour is enabled for this layer (see the type docs).
    pub training: Param<Flag>,
    /// The running mean, `[C]`.
    pub running_mean: RunningState<Tensor<1>>,
    /// The running (unbiased) variance, `[C]`.
    pub running_var: RunningState<Tensor<1>>,
    /// Momentum of the running statistics.
    pub momentum: f64,
    /// Added to the variance for numerical stability.
    pub epsilon: f64,
}

impl MaskedBatchNorm {
    /// Number of features (channels).
    pub fn num_features(&self) -> usize {
        let [c] = self.gamma.shape().dims();
        c
    }

    /// Whether a forward on `device` takes the training path (flag on and autodiff device).
    pub fn is_training_on(&self, device: &Device) -> bool {
        self.training.is_enabled() && device.is_autodiff()
    }

    /// Normalise `x` (`[B, C, ...]`) over its present samples (`presence`: `[B]` of 0/1).
    ///
    /// See [`MaskedBatchNorm`] for the formulas; returns the shape of `x`.
    ///
    /// # Errors
    ///
    /// [`MaskedBatchNormError`] if `x` has rank < 2, its axis 1 is not `num_features`, or
    /// `presence` does not have `B` entries. Nothing is computed or updated then.
    pub fn try_forward<const D: usize>(
        &self,
        x: Tensor<D>,
        presence: Tensor<1>,
    ) -> Result<Tensor<D>, MaskedBatchNormError> {
        let dims = x.dims();
        if D < 2 {
            return Err(MaskedBatchNormError::RankTooLow { rank: D });
        }
        let expected = self.num_features();
        if dims[1] != expected {
            return Err(MaskedBatchNormError::ChannelMismatch {
                expected,
                got: dims[1],
            });
        }
        let [presence_len] = presence.dims();
        if presence_len != dims[0] {
            return Err(MaskedBatchNormError::PresenceLength {
                presence: presence_len,
                batch: dims[0],
            });
        }

        // Work in [B, C, S]: a free reshape of the contiguous input, and one code path for
        // every rank. Per-channel statistics are then [1, C, 1] and the mask [B, 1, 1].
        let (batch, channels) = (dims[0], dims[1]);
        let spatial: usize = dims[2..].iter().product();
        let x3: Tensor<3> = x.reshape([batch, channels, spatial]);
        let mask = presence.reshape([batch, 1, 1]);

        let y3 = if self.is_training_on(&x3.device()) {
            self.forward_train(x3, mask, spatial)
        } else {
            self.forward_eval(x3, mask)
        };
        Ok(y3.reshape(dims))
    }

    /// [`try_forward`](Self::try_forward) for shapes known to be right.
    ///
    /// # Panics
    ///
    /// With the [`MaskedBatchNormError`] message if `x` has rank < 2, its axis 1 is not
    /// `num_features`, or `presence` does not have `B` entries (programming errors: shapes
    /// are fixed by the model and the batcher).
    pub fn forward<const D: usize>(&self, x: Tensor<D>, presence: Tensor<1>) -> Tensor<D> {
        match self.try_forward(x, presence) {
            Ok(y) => y,
            Err(e) => panic!("MaskedBatchNorm::forward: {e}"),
        }
    }

    /// Plain BatchNorm with PyTorch's semantics (every sample present): `forward` with a
    /// presence of ones.
    ///
    /// # Panics
    ///
    /// As [`forward`](Self::forward).
    pub fn forward_all_present<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let presence = Tensor::ones([x.dims()[0]], &x.device());
        self.forward(x, presence)
    }

    fn channel_view(&self, t: Tensor<1>) -> Tensor<3> {
        t.reshape([1, self.num_features(), 1])
    }

    fn forward_train(&self, x: Tensor<3>, mask: Tensor<3>, spatial: usize) -> Tensor<3> {
        let device = x.device();

        // n = S * (number of present samples), as a [1, 1, 1] tensor (no host read).
        let count = mask
            .clone()
            .sum()
            .mul_scalar(spatial as f64)
            .reshape([1, 1, 1]);
        // max(n, 1): with no sample present every sum is 0, so the statistics are 0, not NaN.
        let denom = count.clone().clamp_min(1.0);

        let sum = (x.clone() * mask.clone()).sum_dim(2).sum_dim(0); // [1, C, 1]
        let mean = sum / denom.clone();
        let centered = (x - mean.clone()) * mask.clone(); // absent samples: 0
        let var = centered.clone().square().sum_dim(2).sum_dim(0) / denom.clone(); // biased
        let inv_std = (var.clone() + self.epsilon).sqrt().recip();

        let gamma = self.channel_view(self.gamma.val());
        let beta = self.channel_view(self.beta.val());
        let y = centered * (inv_std * gamma) + mask * beta;

        // Running statistics, outside the graph. `keep` is 1 when at least two samples are
        // present (n >= 2 * S), else 0; n / max(n - 1, 1) is finite for every n.
        let count = count.detach();
        let denom = denom.detach();
        let keep = count
            .clone()
            .greater_equal_elem(2.0 * spatial as f64)
            .float()
            .reshape([1]);
        let unbiased = var.detach() * denom / (count - 1.0).clamp_min(1.0);
        let batch_mean = mean.detach().reshape([self.num_features()]);
        let batch_var = unbiased.reshape([self.num_features()]);

        let running_mean = self.running_mean.value_sync().to_device(&device);
        let running_var = self.running_var.value_sync().to_device(&device);
        let new_mean = blend(running_mean, batch_mean, self.momentum, keep.clone());
        let new_var = blend(running_var, batch_var, self.momentum, keep);
        self.running_mean.update(new_mean.detach());
        self.running_var.update(new_var.detach());

        y
    }

    fn forward_eval(&self, x: Tensor<3>, mask: Tensor<3>) -> Tensor<3> {
        let device = x.device();
        let mean = self.running_mean.value().to_device(&device);
        let var = self.running_var.value().to_device(&device);
        // gamma (x - mean) / sqrt(var + eps) + beta = x * scale + (beta - mean * scale)
        let scale = self.gamma.val() * (var + self.epsilon).sqrt().recip();
        let shift = self.beta.val() - mean * scale.clone();
        let scale = self.channel_view(scale);
        let shift = self.channel_view(shift);
        (x * scale + shift) * mask
    }
}

/// `keep ? (1 - momentum) * running + momentum * stat : running`, with `keep` a `[1]` tensor
/// holding exactly 0.0 or 1.0 (both branches finite, so the blend is exact).
fn blend(running: Tensor<1>, stat: Tensor<1>, momentum: f64, keep: Tensor<1>) -> Tensor<1> {
    let updated = running.clone().mul_scalar(1.0 - momentum) + stat.mul_scalar(momentum);
    let skip = keep.clone().neg() + 1.0;
    running * skip + updated * keep
}

impl ModuleDisplay for MaskedBatchNorm {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let content = content
            .add("num_features", &self.num_features())
            .add("momentum", &self.momentum)
            .add("epsilon", &self.epsilon);
        match self.training.is_enabled() {
            true => content.optional(),
            false => content.add("training", &self.training).optional(),
        }
    }
}
