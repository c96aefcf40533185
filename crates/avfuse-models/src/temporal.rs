//! Temporal encoders over per-frame (or per-step) features: `[B, T, D]` to a clip embedding
//! `[B, D_out]` and per-step outputs `[B, T, D_out]`.
//!
//! Every encoder takes an optional **time mask** `[B, T]` (1.0 for a valid step, 0.0 for a
//! padded or missing one; `None` means every step is valid). Masked steps never contribute:
//! their inputs are zeroed on entry (so nothing downstream depends on their values), they are
//! excluded from attention (key padding mask) and from the temporal mean, and their per-step
//! outputs are exactly zero. A sample whose steps are all masked gets a zero clip embedding
//! and zero per-step outputs, without NaN. Masked inputs must hold finite values (they are
//! multiplied by zero; `NaN * 0` is NaN), as everywhere in avfuse.
//!
//! Three encoders, chosen by [`TemporalKind`] (config `kind: avg_pool | tconv | transformer`):
//! - [`AvgPool`]: masked temporal mean, no parameters.
//! - [`TConv`]: input projection, residual blocks of pre-LayerNorm 1-d temporal convolution
//!   (kernel `k`, "same" zero padding), final LayerNorm, masked mean.
//! - [`Transformer`]: input projection, learned or sinusoidal positions, pre-norm Transformer
//!   encoder layers (Burn's `TransformerEncoderLayer` with `norm_first`, equal to PyTorch's
//!   `nn.TransformerEncoderLayer(norm_first=True, batch_first=True)`), final LayerNorm,
//!   masked mean.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::activation::Activation;
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{
    Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig1d,
};
use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{ModelError, invalid};
use crate::head::{ActivationKind, check_dropout, check_positive};

/// Errors of a temporal encoder's `try_forward`: inputs whose shape does not fit the layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemporalError {
    /// The feature axis (axis 2) of the input is not the configured `input_dim`.
    #[error("temporal encoder expects {expected} features per step (axis 2), got {got}")]
    InputDim {
        /// The configured `input_dim`.
        expected: usize,
        /// Axis 2 of the input.
        got: usize,
    },
    /// The time mask is not `[B, T]` for a `[B, T, D]` input.
    #[error("time mask has shape {got:?}, expected [B, T] = {expected:?}")]
    MaskShape {
        /// `[B, T]` of the input.
        expected: [usize; 2],
        /// Shape of the mask.
        got: [usize; 2],
    },
    /// A sequence longer than the learned position table.
    #[error(
        "sequence of {len} steps is longer than the learned position table ({max_len} steps, \
         model.temporal.max_len)"
    )]
    TooLong {
        /// Number of steps of the input.
        len: usize,
        /// Rows of the position table.
        max_len: usize,
    },
}

/// Output of a temporal encoder.
#[derive(Clone, Debug)]
pub struct TemporalOutput {
    /// Clip embedding `[B, D_out]`: the masked temporal mean of `steps` (zero for a sample
    /// with no valid step).
    pub clip: Tensor<2>,
    /// Per-step outputs `[B, T, D_out]`, exactly zero at masked steps.
    pub steps: Tensor<3>,
}

/// `x * mask` broadcast over the feature axis: `[B, T, D]` times `[B, T]`. `None` returns
/// `x` unchanged.
pub fn mask_steps(x: Tensor<3>, mask: Option<&Tensor<2>>) -> Tensor<3> {
    match mask {
        Some(m) => {
            let [b, t] = m.dims();
            x * m.clone().reshape([b, t, 1])
        }
        None => x,
    }
}

/// Masked temporal mean: `sum_t m_bt x_btd / max(sum_t m_bt, 1)`, `[B, T, D]` to `[B, D]`.
///
/// With `mask` `None` this is the plain mean over `T`. A sample with no valid step gets
/// zeros (not NaN); masked steps do not contribute whatever their (finite) values.
pub fn masked_mean(x: Tensor<3>, mask: Option<&Tensor<2>>) -> Tensor<2> {
    match mask {
        Some(m) => {
            let count = m.clone().sum_dim(1).clamp_min(1.0); // [B, 1]
            mask_steps(x, Some(m)).sum_dim(1).squeeze_dim::<2>(1) / count
        }
        None => x.mean_dim(1).squeeze_dim::<2>(1),
    }
}

/// `mask < 0.5` as Burn's key padding mask (true = padded), `[B, T]`.
pub(crate) fn padding_mask(mask: &Tensor<2>) -> Tensor<2, burn::tensor::Bool> {
    mask.clone().lower_elem(0.5)
}

/// Check `[B, T, D]` against `input_dim` and the mask against `[B, T]`.
fn check_input(
    x: &Tensor<3>,
    mask: Option<&Tensor<2>>,
    input_dim: usize,
) -> Result<(), TemporalError> {
    let [b, t, d] = x.dims();
    if d != input_dim {
        return Err(TemporalError::InputDim {
            expected: input_dim,
            got: d,
        });
    }
    if let Some(m) = mask {
        let got = m.dims();
        if got != [b, t] {
            return Err(TemporalError::MaskShape {
                expected: [b, t],
                got,
            });
        }
    }
    Ok(())
}

fn output(steps: Tensor<3>, mask: Option<&Tensor<2>>) -> TemporalOutput {
    let steps = mask_steps(steps, mask);
    TemporalOutput {
        clip: masked_mean(steps.clone(), mask),
        steps,
    }
}

// ---------------------------------------------------------------------------------------
// AvgPool
// ---------------------------------------------------------------------------------------

/// Configuration of [`AvgPool`].
#[derive(Config, Debug)]
pub struct AvgPoolConfig {
    /// Features per step (`D`); the output has the same width.
    pub input_dim: usize,
}

impl AvgPoolConfig {
    /// Check the configuration; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        check_positive(&format!("{prefix}.input_dim"), self.input_dim)
    }

    /// Validate (keys under `model.temporal`) and build the layer.
    pub fn init(&self, _device: &Device) -> Result<AvgPool, ModelError> {
        self.validate("model.temporal")?;
        Ok(AvgPool {
            input_dim: self.input_dim,
        })
    }
}

/// Masked temporal mean: `[B, T, D]` to clip `[B, D]` (see [`masked_mean`]); per-step output
/// is the input with masked steps zeroed. No parameters.
#[derive(Module, Debug)]
pub struct AvgPool {
    input_dim: usize,
}

impl AvgPool {
    /// Width of the output (`= input_dim`).
    pub fn output_dim(&self) -> usize {
        self.input_dim
    }

    /// `x`: `[B, T, D]`, `mask`: `[B, T]` (1 valid) or `None`.
    ///
    /// # Errors
    /// [`TemporalError`] when `D != input_dim` or the mask is not `[B, T]`.
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<2>>,
    ) -> Result<TemporalOutput, TemporalError> {
        check_input(&x, mask, self.input_dim)?;
        Ok(output(x, mask))
    }

    /// [`try_forward`](Self::try_forward) for shapes known to be right.
    ///
    /// # Panics
    /// With the [`TemporalError`] message on a shape mismatch (a programming error).
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<2>>) -> TemporalOutput {
        self.try_forward(x, mask)
            .unwrap_or_else(|e| panic!("AvgPool::forward: {e}"))
    }
}

// ---------------------------------------------------------------------------------------
// TConv
// ---------------------------------------------------------------------------------------

/// Configuration of [`TConv`].
#[derive(Config, Debug)]
pub struct TConvConfig {
    /// Features per input step (`D`).
    pub input_dim: usize,
    /// Width of the hidden and output features (`D_out`).
    #[config(default = 128)]
    pub dim: usize,
    /// Number of residual temporal-conv blocks.
    #[config(default = 2)]
    pub layers: usize,
    /// Temporal kernel size, odd (`"same"` padding of `(k - 1) / 2` steps on each side).
    #[config(default = 3)]
    pub kernel_size: usize,
    /// Dropout on each block's residual branch (training only), in `[0, 1)`.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Activation after each convolution.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
}

impl TConvConfig {
    /// Check the configuration; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        check_positive(&format!("{prefix}.input_dim"), self.input_dim)?;
        check_positive(&format!("{prefix}.dim"), self.dim)?;
        if self.kernel_size == 0 || self.kernel_size.is_multiple_of(2) {
            return Err(invalid(
                &format!("{prefix}.kernel_size"),
                self.kernel_size,
                "must be odd (3, 5, ...) so the convolution keeps the step positions",
            ));
        }
        check_dropout(&format!("{prefix}.dropout"), self.dropout)
    }

    /// Validate (keys under `model.temporal`) and build the encoder on `device`.
    pub fn init(&self, device: &Device) -> Result<TConv, ModelError> {
        self.validate("model.temporal")?;
        let pad = (self.kernel_size - 1) / 2;
        let blocks = (0..self.layers)
            .map(|_| TConvBlock {
                norm: LayerNormConfig::new(self.dim).init(device),
                conv: Conv1dConfig::new(self.dim, self.dim, self.kernel_size)
                    .with_padding(PaddingConfig1d::Explicit(pad, pad))
                    .init(device),
                activation: self.activation.init(device),
                dropout: DropoutConfig::new(self.dropout).init(),
            })
            .collect();
        Ok(TConv {
            proj: LinearConfig::new(self.input_dim, self.dim).init(device),
            blocks,
            norm: LayerNormConfig::new(self.dim).init(device),
        })
    }
}

/// One residual block of [`TConv`]: `h + dropout(act(conv(LN(h) * m)))`, then `* m`.
#[derive(Module, Debug)]
pub struct TConvBlock {
    norm: LayerNorm,
    conv: Conv1d,
    activation: Activation,
    dropout: Dropout,
}

/// Temporal convolution encoder: `[B, T, D]` to `[B, T, dim]` and clip `[B, dim]`.
///
/// `h = proj(x * m) * m`; per block `h = (h + dropout(act(conv1d(LN(h) * m)))) * m`;
/// `steps = LN(h) * m`; `clip = masked_mean(steps)`. The convolution's input is zero at
/// masked steps and beyond the ends, so trailing padding gives exactly what the unpadded,
/// shorter sequence gives (tested); a masked step inside a sequence acts as a zero step.
#[derive(Module, Debug)]
pub struct TConv {
    proj: Linear,
    blocks: Vec<TConvBlock>,
    norm: LayerNorm,
}

impl TConv {
    /// Width of the output. Reads the shape without initialising lazy parameters.
    pub fn output_dim(&self) -> usize {
        self.proj.weight.lazy_shape()[1]
    }

    fn input_dim(&self) -> usize {
        self.proj.weight.lazy_shape()[0]
    }

    /// `x`: `[B, T, D]`, `mask`: `[B, T]` (1 valid) or `None`.
    ///
    /// # Errors
    /// [`TemporalError`] when `D != input_dim` or the mask is not `[B, T]`.
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<2>>,
    ) -> Result<TemporalOutput, TemporalError> {
        check_input(&x, mask, self.input_dim())?;
        let mut h = mask_steps(self.proj.forward(mask_steps(x, mask)), mask);
        for block in &self.blocks {
            let y = mask_steps(block.norm.forward(h.clone()), mask);
            // [B, T, C] -> [B, C, T] for the convolution and back.
            let y = block.conv.forward(y.swap_dims(1, 2)).swap_dims(1, 2);
            let y = block.dropout.forward(block.activation.forward(y));
            h = mask_steps(h + y, mask);
        }
        Ok(output(self.norm.forward(h), mask))
    }

    /// [`try_forward`](Self::try_forward) for shapes known to be right.
    ///
    /// # Panics
    /// With the [`TemporalError`] message on a shape mismatch (a programming error).
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<2>>) -> TemporalOutput {
        self.try_forward(x, mask)
            .unwrap_or_else(|e| panic!("TConv::forward: {e}"))
    }
}

// ---------------------------------------------------------------------------------------
// Transformer
// ---------------------------------------------------------------------------------------

/// Position information added to the projected steps of a [`Transformer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionKind {
    /// Fixed sinusoids (`sin`/`cos` interleaved, timescale 10000, "Attention is all you
    /// need"); any length.
    Sinusoidal,
    /// A learned `[max_len, dim]` table (initialised N(0, 0.02)); at most `max_len` steps.
    Learned,
    /// No positions (the encoder is then permutation-equivariant).
    None,
}

/// Configuration of [`Transformer`].
#[derive(Config, Debug)]
pub struct TransformerConfig {
    /// Features per input step (`D`).
    pub input_dim: usize,
    /// Model width (`D_out`); divisible by `heads`; even with sinusoidal positions.
    #[config(default = 128)]
    pub dim: usize,
    /// Number of encoder layers.
    #[config(default = 2)]
    pub layers: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Hidden width of each layer's feed-forward network.
    #[config(default = 256)]
    pub ff_dim: usize,
    /// Dropout on attention weights, residual branches and the feed-forward hidden layer
    /// (training only), in `[0, 1)`.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Feed-forward activation.
    #[config(default = "ActivationKind::Gelu")]
    pub activation: ActivationKind,
    /// Positions added after the input projection.
    #[config(default = "PositionKind::Sinusoidal")]
    pub positions: PositionKind,
    /// Rows of the learned position table (`positions: learned` only).
    #[config(default = 512)]
    pub max_len: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl TransformerConfig {
    /// Check the configuration; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        check_positive(&format!("{prefix}.input_dim"), self.input_dim)?;
        check_positive(&format!("{prefix}.dim"), self.dim)?;
        check_positive(&format!("{prefix}.heads"), self.heads)?;
        check_positive(&format!("{prefix}.ff_dim"), self.ff_dim)?;
        if !self.dim.is_multiple_of(self.heads) {
            return Err(invalid(
                &format!("{prefix}.dim"),
                self.dim,
                &format!("must be divisible by {prefix}.heads = {}", self.heads),
            ));
        }
        if self.positions == PositionKind::Sinusoidal && !self.dim.is_multiple_of(2) {
            return Err(invalid(
                &format!("{prefix}.dim"),
                self.dim,
                "must be even with sinusoidal positions",
            ));
        }
        if self.positions == PositionKind::Learned {
            check_positive(&format!("{prefix}.max_len"), self.max_len)?;
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(invalid(
                &format!("{prefix}.layer_norm_eps"),
                self.layer_norm_eps,
                "must be finite and > 0",
            ));
        }
        check_dropout(&format!("{prefix}.dropout"), self.dropout)
    }

    /// Validate (keys under `model.temporal`) and build the encoder on `device`.
    pub fn init(&self, device: &Device) -> Result<Transformer, ModelError> {
        self.validate("model.temporal")?;
        let proj = LinearConfig::new(self.input_dim, self.dim).init(device);
        let position_table = (self.positions == PositionKind::Learned).then(|| {
            Initializer::Normal {
                mean: 0.0,
                std: 0.02,
            }
            .init([self.max_len, self.dim], device)
        });
        let encoder = TransformerEncoderConfig::new(self.dim, self.ff_dim, self.heads, self.layers)
            .with_dropout(self.dropout)
            .with_norm_first(true)
            .with_activation(self.activation.config())
            .with_layer_norm_eps(self.layer_norm_eps)
            .init(device);
        Ok(Transformer {
            proj,
            position_table,
            sinusoidal: self.positions == PositionKind::Sinusoidal,
            encoder,
            norm: LayerNormConfig::new(self.dim)
                .with_epsilon(self.layer_norm_eps)
                .init(device),
        })
    }
}

/// Sinusoidal positions `[T, dim]` (`dim` even): `pe[t, 2i] = sin(t w_i)`,
/// `pe[t, 2i + 1] = cos(t w_i)`, `w_i = 10000^(-2i / dim)`; computed in `f64`.
pub fn sinusoids(len: usize, dim: usize, device: &Device) -> Tensor<2> {
    let mut v = Vec::with_capacity(len * dim);
    for t in 0..len {
        for k in 0..dim {
            let i = (k / 2) as f64;
            let w = (-(10000f64.ln()) * 2.0 * i / dim as f64).exp();
            let a = t as f64 * w;
            v.push(if k % 2 == 0 { a.sin() } else { a.cos() } as f32);
        }
    }
    Tensor::from_data(TensorData::new(v, [len, dim]), device)
}

/// Transformer temporal encoder: `[B, T, D]` to `[B, T, dim]` and clip `[B, dim]`.
///
/// `h = proj(x * m) + pos[:T]`, then `layers` pre-norm encoder layers
/// (`h = h + drop(MHA(LN(h)))`, `h = h + drop(FF(LN(h)))`, masked steps excluded as keys),
/// `steps = LN(h) * m`, `clip = masked_mean(steps)`. Per-step outputs of valid steps do not
/// depend on masked steps at all: padded keys get weight `exp(-1e4 - max) = 0` and their
/// inputs are zeroed. A sample with every step masked attends uniformly among its (zeroed)
/// steps, which is finite, and its outputs are then zeroed.
///
/// The layer is Burn's `TransformerEncoderLayer`; its parameters map to PyTorch's
/// `nn.TransformerEncoderLayer(norm_first=True, batch_first=True)` as: `in_proj_weight`
/// rows `[0, d)`, `[d, 2d)`, `[2d, 3d)` = `mha.{query,key,value}.weight` transposed,
/// `out_proj` = `mha.output`, `linear1`/`linear2` = `pwff.linear_inner`/`linear_outer`
/// (transposed), `norm1` (before attention) = `norm_2`, `norm2` (before the feed-forward) =
/// `norm_1`; LayerNorm `weight`/`bias` = `gamma`/`beta` (see
/// `scripts/fixtures/make_temporal_fixtures.py`, checked to 1e-5).
#[derive(Module, Debug)]
pub struct Transformer {
    proj: Linear,
    position_table: Option<Param<Tensor<2>>>,
    sinusoidal: bool,
    encoder: TransformerEncoder,
    norm: LayerNorm,
}

impl Transformer {
    /// Width of the output. Reads the shape without initialising lazy parameters.
    pub fn output_dim(&self) -> usize {
        self.proj.weight.lazy_shape()[1]
    }

    fn input_dim(&self) -> usize {
        self.proj.weight.lazy_shape()[0]
    }

    /// `x`: `[B, T, D]`, `mask`: `[B, T]` (1 valid) or `None`.
    ///
    /// # Errors
    /// [`TemporalError`] when `D != input_dim`, the mask is not `[B, T]`, or (learned
    /// positions) `T > max_len`.
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<2>>,
    ) -> Result<TemporalOutput, TemporalError> {
        check_input(&x, mask, self.input_dim())?;
        let [_, t, _] = x.dims();
        let dim = self.output_dim();
        let device = x.device();
        let mut h = self.proj.forward(mask_steps(x, mask));
        if let Some(table) = &self.position_table {
            let max_len = table.lazy_shape()[0];
            if t > max_len {
                return Err(TemporalError::TooLong { len: t, max_len });
            }
            h = h + table.val().narrow(0, 0, t).unsqueeze::<3>();
        } else if self.sinusoidal {
            h = h + sinusoids(t, dim, &device).unsqueeze::<3>();
        }
        let mut input = TransformerEncoderInput::new(h);
        if let Some(m) = mask {
            input = input.mask_pad(padding_mask(m));
        }
        let h = self.encoder.forward(input);
        Ok(output(self.norm.forward(h), mask))
    }

    /// [`try_forward`](Self::try_forward) for shapes known to be right.
    ///
    /// # Panics
    /// With the [`TemporalError`] message on a shape mismatch or a too long sequence.
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<2>>) -> TemporalOutput {
        self.try_forward(x, mask)
            .unwrap_or_else(|e| panic!("Transformer::forward: {e}"))
    }
}

// ---------------------------------------------------------------------------------------
// TemporalEncoder
// ---------------------------------------------------------------------------------------

/// Which temporal encoder (config `model.temporal.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemporalKind {
    /// [`AvgPool`].
    AvgPool,
    /// [`TConv`].
    #[serde(rename = "tconv")]
    TConv,
    /// [`Transformer`].
    Transformer,
}

/// Configuration of [`TemporalEncoder`]: the union of the three encoders' settings (each
/// uses the fields it needs; `avg_pool` only `input_dim`).
#[derive(Config, Debug)]
pub struct TemporalEncoderConfig {
    /// Features per input step (`D`).
    pub input_dim: usize,
    /// Which encoder.
    #[config(default = "TemporalKind::AvgPool")]
    pub kind: TemporalKind,
    /// Output width for `tconv` / `transformer` (`avg_pool` keeps `input_dim`).
    #[config(default = 128)]
    pub dim: usize,
    /// Blocks (`tconv`) or encoder layers (`transformer`).
    #[config(default = 2)]
    pub layers: usize,
    /// `tconv`: temporal kernel size (odd).
    #[config(default = 3)]
    pub kernel_size: usize,
    /// `transformer`: attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// `transformer`: feed-forward hidden width.
    #[config(default = 256)]
    pub ff_dim: usize,
    /// Dropout (training only), in `[0, 1)`.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Activation; `None` takes the encoder's default (`relu` for `tconv`, `gelu` for
    /// `transformer`).
    #[config(default = "None")]
    pub activation: Option<ActivationKind>,
    /// `transformer`: position encoding.
    #[config(default = "PositionKind::Sinusoidal")]
    pub positions: PositionKind,
    /// `transformer` with learned positions: maximum number of steps.
    #[config(default = 512)]
    pub max_len: usize,
}

impl TemporalEncoderConfig {
    /// The [`TConvConfig`] this configuration describes.
    pub fn tconv(&self) -> TConvConfig {
        TConvConfig::new(self.input_dim)
            .with_dim(self.dim)
            .with_layers(self.layers)
            .with_kernel_size(self.kernel_size)
            .with_dropout(self.dropout)
            .with_activation(self.activation.unwrap_or(ActivationKind::Relu))
    }

    /// The [`TransformerConfig`] this configuration describes.
    pub fn transformer(&self) -> TransformerConfig {
        TransformerConfig::new(self.input_dim)
            .with_dim(self.dim)
            .with_layers(self.layers)
            .with_heads(self.heads)
            .with_ff_dim(self.ff_dim)
            .with_dropout(self.dropout)
            .with_activation(self.activation.unwrap_or(ActivationKind::Gelu))
            .with_positions(self.positions)
            .with_max_len(self.max_len)
    }

    /// Width of the encoder's output.
    pub fn output_dim(&self) -> usize {
        match self.kind {
            TemporalKind::AvgPool => self.input_dim,
            TemporalKind::TConv | TemporalKind::Transformer => self.dim,
        }
    }

    /// Check the fields the chosen `kind` uses; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        match self.kind {
            TemporalKind::AvgPool => AvgPoolConfig::new(self.input_dim).validate(prefix),
            TemporalKind::TConv => self.tconv().validate(prefix),
            TemporalKind::Transformer => self.transformer().validate(prefix),
        }
    }

    /// Validate (keys under `model.temporal`) and build the chosen encoder on `device`.
    pub fn init(&self, device: &Device) -> Result<TemporalEncoder, ModelError> {
        Ok(match self.kind {
            TemporalKind::AvgPool => {
                TemporalEncoder::AvgPool(AvgPoolConfig::new(self.input_dim).init(device)?)
            }
            TemporalKind::TConv => TemporalEncoder::TConv(self.tconv().init(device)?),
            TemporalKind::Transformer => {
                TemporalEncoder::Transformer(self.transformer().init(device)?)
            }
        })
    }
}

/// One of the temporal encoders, chosen by [`TemporalEncoderConfig::kind`].
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum TemporalEncoder {
    /// Masked mean.
    AvgPool(AvgPool),
    /// Temporal convolutions.
    TConv(TConv),
    /// Pre-norm Transformer encoder.
    Transformer(Transformer),
}

impl TemporalEncoder {
    /// Width of the output (`D_out`).
    pub fn output_dim(&self) -> usize {
        match self {
            TemporalEncoder::AvgPool(m) => m.output_dim(),
            TemporalEncoder::TConv(m) => m.output_dim(),
            TemporalEncoder::Transformer(m) => m.output_dim(),
        }
    }

    /// `x`: `[B, T, D]`, `mask`: `[B, T]` (1 valid) or `None`. Returns clip `[B, D_out]` and
    /// steps `[B, T, D_out]`.
    ///
    /// # Errors
    /// [`TemporalError`] on a shape mismatch or a too long sequence (learned positions).
    pub fn try_forward(
        &self,
        x: Tensor<3>,
        mask: Option<&Tensor<2>>,
    ) -> Result<TemporalOutput, TemporalError> {
        match self {
            TemporalEncoder::AvgPool(m) => m.try_forward(x, mask),
            TemporalEncoder::TConv(m) => m.try_forward(x, mask),
            TemporalEncoder::Transformer(m) => m.try_forward(x, mask),
        }
    }

    /// [`try_forward`](Self::try_forward) for shapes known to be right.
    ///
    /// # Panics
    /// With the [`TemporalError`] message on a shape mismatch or a too long sequence.
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<2>>) -> TemporalOutput {
        self.try_forward(x, mask)
            .unwrap_or_else(|e| panic!("TemporalEncoder::forward: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_mean_ignores_masked_steps_and_gives_zero_for_empty_rows() {
        let d = Device::flex();
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3, 1]),
            &d,
        );
        let m = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0, 0.0, 0.0], [2, 3]),
            &d,
        );
        let y = masked_mean(x, Some(&m))
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(y, vec![2.0, 0.0]);
    }

    #[test]
    fn sinusoids_match_the_closed_form() {
        let d = Device::flex();
        let pe = sinusoids(3, 4, &d).into_data().try_to_vec::<f32>().unwrap();
        let w1 = 1.0f64 / 100.0; // 10000^(-2/4)
        let expect = [
            0.0,
            1.0,
            0.0,
            1.0,
            1f64.sin(),
            1f64.cos(),
            w1.sin(),
            w1.cos(),
            2f64.sin(),
            2f64.cos(),
            (2.0 * w1).sin(),
            (2.0 * w1).cos(),
        ];
        for (a, b) in pe.iter().zip(expect) {
            assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn invalid_configs_name_the_key() {
        let e = TemporalEncoderConfig::new(8)
            .with_kind(TemporalKind::TConv)
            .with_kernel_size(4)
            .validate("model.temporal")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("model.temporal.kernel_size = 4"),
            "{e}"
        );
        let e = TemporalEncoderConfig::new(8)
            .with_kind(TemporalKind::Transformer)
            .with_dim(10)
            .with_heads(4)
            .validate("model.temporal")
            .unwrap_err();
        assert!(e.to_string().starts_with("model.temporal.dim = 10"), "{e}");
        let e = TemporalEncoderConfig::new(8)
            .with_kind(TemporalKind::Transformer)
            .with_dropout(1.5)
            .init(&Device::flex())
            .unwrap_err();
        assert!(
            e.to_string().starts_with("model.temporal.dropout = 1.5"),
            "{e}"
        );
    }

    #[test]
    fn learned_positions_refuse_a_too_long_sequence() {
        let d = Device::flex();
        let enc = TemporalEncoderConfig::new(4)
            .with_kind(TemporalKind::Transformer)
            .with_dim(8)
            .with_heads(2)
            .with_positions(PositionKind::Learned)
            .with_max_len(3)
            .init(&d)
            .unwrap();
        let e = enc
            .try_forward(Tensor::zeros([1, 4, 4], &d), None)
            .unwrap_err();
        assert_eq!(e, TemporalError::TooLong { len: 4, max_len: 3 });
        let e = enc
            .try_forward(Tensor::zeros([1, 3, 5], &d), None)
            .unwrap_err();
        assert_eq!(
            e,
            TemporalError::InputDim {
                expected: 4,
                got: 5
            }
        );
    }
}
