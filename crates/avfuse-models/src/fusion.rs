//! Fusion of `M` modality embeddings under a `[B, M]` presence mask.
//!
//! Presence follows the crate's convention: column `m` of the `[B, M]` mask is modality `m`
//! in [`crate::Modality`] order (or the caller's order for other modality sets), 1.0 present,
//! 0.0 absent (missing data and dropped modalities alike). Every fusion guarantees that an
//! absent modality's features never reach the output: changing them changes nothing, bit
//! for bit, in evaluation and in training (tested), as long as they are finite (`NaN * 0` is
//! NaN). A sample with every modality absent gives finite output (no NaN).
//!
//! Three strategies (config `fusion.strategy`):
//! - [`ConcatFusion`] (`concat`): `[B, sum_m D_m]`, an absent modality replaced by zeros or a
//!   learned "missing" embedding. Any `M`.
//! - [`AttentionFusion`] (`attention`): each modality projected to a common width, scored,
//!   softmax over the **present** modalities only (absent weights exactly 0), weighted sum
//!   `[B, dim]`. Any `M`. Returns the `[B, M]` weights.
//! - [`CrossModalFusion`] (`cross_modal`): the two token sequences attend to each other
//!   (masked by presence and by their time masks), then each is pooled: `[B, 2 dim]`.
//!   `M = 2` only. Returns the attention maps.

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::transformer::{PositionWiseFeedForward, PositionWiseFeedForwardConfig};
use burn::nn::{Dropout, DropoutConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, invalid};
use crate::head::{ActivationKind, check_dropout, check_positive};
use crate::temporal::{TemporalOutput, mask_steps, masked_mean, padding_mask};

/// Errors of a fusion's `try_forward`: inputs whose shape does not fit the layer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FusionError {
    /// Not one feature set per configured modality.
    #[error("fusion was built for {expected} modalities, got {got} feature sets")]
    ModalityCount {
        /// Configured number of modalities.
        expected: usize,
        /// Number of feature sets given.
        got: usize,
    },
    /// The presence mask is not `[B, M]`.
    #[error("presence has shape {got:?}, expected [B, M] = {expected:?}")]
    PresenceShape {
        /// `[B, M]`.
        expected: [usize; 2],
        /// Shape given.
        got: [usize; 2],
    },
    /// A modality's features do not have the configured width or the batch size.
    #[error("modality {modality}: {what} has shape {got:?}, expected {expected:?}")]
    FeatureShape {
        /// Index of the modality (presence column).
        modality: usize,
        /// Which tensor (`clip`, `tokens` or `time_mask`).
        what: &'static str,
        /// Expected shape (`0` where any size is allowed).
        expected: Vec<usize>,
        /// Shape given.
        got: Vec<usize>,
    },
}

/// One modality's features for a fusion.
#[derive(Clone, Debug)]
pub struct ModalityFeatures {
    /// Clip embedding `[B, D_m]` (used by `concat` and `attention`).
    pub clip: Tensor<2>,
    /// Token sequence `[B, T_m, D_m]` (used by `cross_modal`; `None`: the clip embedding is
    /// used as a single token).
    pub tokens: Option<Tensor<3>>,
    /// Time mask of `tokens`, `[B, T_m]` (1 valid, 0 padded); `None`: every step valid.
    pub time_mask: Option<Tensor<2>>,
}

impl ModalityFeatures {
    /// A clip embedding `[B, D_m]` only.
    pub fn from_clip(clip: Tensor<2>) -> Self {
        Self {
            clip,
            tokens: None,
            time_mask: None,
        }
    }

    /// A token sequence `[B, T_m, D_m]` with its time mask; the clip embedding is the masked
    /// temporal mean.
    pub fn from_tokens(tokens: Tensor<3>, time_mask: Option<Tensor<2>>) -> Self {
        Self {
            clip: masked_mean(tokens.clone(), time_mask.as_ref()),
            tokens: Some(tokens),
            time_mask,
        }
    }

    /// A temporal encoder's output (clip and steps) with the time mask it was given.
    pub fn from_temporal(out: TemporalOutput, time_mask: Option<Tensor<2>>) -> Self {
        Self {
            clip: out.clip,
            tokens: Some(out.steps),
            time_mask,
        }
    }
}

/// Cross-modal attention maps of the last [`CrossModalFusion`] layer, for reports.
///
/// Rows of masked query steps, rows whose attended modality is absent (or has no valid
/// step) and columns of masked key steps are exactly 0; other rows sum to 1 over the valid
/// keys (in evaluation; in training, attention dropout is applied to them as in PyTorch).
#[derive(Clone, Debug)]
pub struct CrossWeights {
    /// Modality 0's steps attending to modality 1's, `[B, heads, T_0, T_1]`.
    pub first_to_second: Tensor<4>,
    /// Modality 1's steps attending to modality 0's, `[B, heads, T_1, T_0]`.
    pub second_to_first: Tensor<4>,
}

/// Output of a fusion.
#[derive(Clone, Debug)]
pub struct FusionOutput {
    /// Fused representation `[B, D_fused]`.
    pub fused: Tensor<2>,
    /// `attention`: the modality weights `[B, M]` (0 for absent modalities, summing to 1
    /// over the present ones; all 0 for a sample with none present).
    pub modality_weights: Option<Tensor<2>>,
    /// `cross_modal`: the attention maps.
    pub cross_weights: Option<CrossWeights>,
}

/// How [`ConcatFusion`] fills an absent modality's slot (config `fusion.missing`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingEmbedding {
    /// Zeros.
    Zeros,
    /// A learned `[D_m]` vector per modality (initialised to zeros), so the head can tell
    /// "absent" from "present with small features".
    Learned,
}

/// Which fusion (config `fusion.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionStrategy {
    /// [`ConcatFusion`].
    Concat,
    /// [`AttentionFusion`].
    Attention,
    /// [`CrossModalFusion`].
    CrossModal,
}

/// Softmax of `scores` `[B, M]` over the entries with `presence` `[B, M]` 1 only.
///
/// Absent entries get weight exactly 0 and do not affect the others (whatever their finite
/// score); the present weights sum to 1. A row with nothing present is all zeros (no NaN).
/// `w = p * exp(s' - max s') / max(sum p * exp(s' - max s'), 1)`, with `s'` the scores where
/// present and the row's minimum score elsewhere (so the maximum is a present score; the sum
/// is then >= 1 and the clamp changes nothing).
pub fn masked_softmax(scores: Tensor<2>, presence: Tensor<2>) -> Tensor<2> {
    let [b, m] = scores.dims();
    let absent = presence.clone().lower_elem(0.5);
    let floor = scores.clone().detach().min_dim(1).expand([b, m]);
    let s = scores.mask_where(absent, floor);
    let max = s.clone().max_dim(1).detach();
    let e = (s - max).exp() * presence;
    let denom = e.clone().sum_dim(1).clamp_min(1.0);
    e / denom
}

/// `presence[:, m]` as a `[B, 1]` column.
fn column(presence: &Tensor<2>, m: usize) -> Tensor<2> {
    presence.clone().narrow(1, m, 1)
}

fn check_shapes(
    features: &[ModalityFeatures],
    presence: &Tensor<2>,
    input_dims: &[usize],
) -> Result<(), FusionError> {
    let m = input_dims.len();
    if features.len() != m {
        return Err(FusionError::ModalityCount {
            expected: m,
            got: features.len(),
        });
    }
    let [b, pm] = presence.dims();
    if pm != m {
        return Err(FusionError::PresenceShape {
            expected: [b, m],
            got: [b, pm],
        });
    }
    for (i, (f, &d)) in features.iter().zip(input_dims).enumerate() {
        let got = f.clip.dims();
        if got != [b, d] {
            return Err(FusionError::FeatureShape {
                modality: i,
                what: "clip",
                expected: vec![b, d],
                got: got.to_vec(),
            });
        }
        if let Some(tok) = &f.tokens {
            let [tb, t, td] = tok.dims();
            if tb != b || td != d {
                return Err(FusionError::FeatureShape {
                    modality: i,
                    what: "tokens",
                    expected: vec![b, 0, d],
                    got: vec![tb, t, td],
                });
            }
        }
        if let Some(mask) = &f.time_mask {
            let t = f.tokens.as_ref().map(|x| x.dims()[1]).unwrap_or(1);
            let got = mask.dims();
            if got != [b, t] {
                return Err(FusionError::FeatureShape {
                    modality: i,
                    what: "time_mask",
                    expected: vec![b, t],
                    got: got.to_vec(),
                });
            }
        }
    }
    Ok(())
}

fn check_dims(prefix: &str, dims: &[usize]) -> Result<(), ModelError> {
    if dims.is_empty() || dims.contains(&0) {
        return Err(invalid(
            &format!("{prefix}.input_dims"),
            dims,
            "must be one positive width per modality",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Concat
// ---------------------------------------------------------------------------------------

/// Configuration of [`ConcatFusion`].
#[derive(Config, Debug)]
pub struct ConcatFusionConfig {
    /// Width `D_m` of each modality's clip embedding, in presence-column order.
    pub input_dims: Vec<usize>,
    /// What an absent modality contributes.
    #[config(default = "MissingEmbedding::Zeros")]
    pub missing: MissingEmbedding,
}

impl ConcatFusionConfig {
    /// Check the configuration; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        check_dims(prefix, &self.input_dims)
    }

    /// Validate (keys under `fusion`) and build the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<ConcatFusion, ModelError> {
        self.validate("fusion")?;
        let missing = match self.missing {
            MissingEmbedding::Zeros => Vec::new(),
            MissingEmbedding::Learned => self
                .input_dims
                .iter()
                .map(|&d| Initializer::Zeros.init([d], device))
                .collect(),
        };
        Ok(ConcatFusion {
            missing,
            input_dims: self.input_dims.clone(),
        })
    }
}

/// Concatenation: `[B, D_0] ... [B, D_{M-1}]` to `[B, sum_m D_m]`.
///
/// Slot `m` of sample `b` is `x_m[b]` when present; when absent it is zeros
/// ([`MissingEmbedding::Zeros`]) or the learned vector `missing_m`
/// ([`MissingEmbedding::Learned`]), never anything computed from `x_m[b]`.
#[derive(Module, Debug)]
pub struct ConcatFusion {
    missing: Vec<Param<Tensor<1>>>,
    #[module(skip)]
    input_dims: Vec<usize>,
}

impl ConcatFusion {
    /// Width of the output.
    pub fn output_dim(&self) -> usize {
        self.input_dims.iter().sum()
    }

    /// See [`Fusion::try_forward`]; uses the clip embeddings.
    ///
    /// # Errors
    /// [`FusionError`] on a shape mismatch.
    pub fn try_forward(
        &self,
        features: &[ModalityFeatures],
        presence: &Tensor<2>,
    ) -> Result<FusionOutput, FusionError> {
        check_shapes(features, presence, &self.input_dims)?;
        let parts = features
            .iter()
            .enumerate()
            .map(|(m, f)| {
                let p = column(presence, m);
                let absent = p.clone().lower_elem(0.5).expand(f.clip.dims());
                let fill = match self.missing.get(m) {
                    Some(v) => v.val().unsqueeze::<2>().expand(f.clip.dims()),
                    None => f.clip.zeros_like(),
                };
                f.clip.clone().mask_where(absent, fill)
            })
            .collect();
        Ok(FusionOutput {
            fused: Tensor::cat(parts, 1),
            modality_weights: None,
            cross_weights: None,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------

/// Configuration of [`AttentionFusion`].
#[derive(Config, Debug)]
pub struct AttentionFusionConfig {
    /// Width `D_m` of each modality's clip embedding, in presence-column order.
    pub input_dims: Vec<usize>,
    /// Common width the modalities are projected to (the output width).
    #[config(default = 128)]
    pub dim: usize,
}

impl AttentionFusionConfig {
    /// Check the configuration; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        check_dims(prefix, &self.input_dims)?;
        check_positive(&format!("{prefix}.dim"), self.dim)
    }

    /// Validate (keys under `fusion`) and build the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<AttentionFusion, ModelError> {
        self.validate("fusion")?;
        Ok(AttentionFusion {
            proj: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.dim).init(device))
                .collect(),
            score: LinearConfig::new(self.dim, 1).init(device),
            modality_bias: Initializer::Zeros.init([self.input_dims.len()], device),
            input_dims: self.input_dims.clone(),
        })
    }
}

/// Attention fusion: `[B, D_m]` per modality to `[B, dim]`.
///
/// `h_m = p_m * W_m x_m` (projection to the common width, zero when absent),
/// `s_m = v . tanh(h_m) + c + b_m` (a shared scorer plus a learned per-modality bias),
/// `w = masked_softmax(s, p)` over the present modalities only ([`masked_softmax`]: absent
/// weights exactly 0), `fused = sum_m w_m h_m`. The weights come back in
/// [`FusionOutput::modality_weights`].
#[derive(Module, Debug)]
pub struct AttentionFusion {
    proj: Vec<Linear>,
    score: Linear,
    modality_bias: Param<Tensor<1>>,
    #[module(skip)]
    input_dims: Vec<usize>,
}

impl AttentionFusion {
    /// Width of the output. Reads the shape without initialising lazy parameters.
    pub fn output_dim(&self) -> usize {
        self.score.weight.lazy_shape()[0]
    }

    /// See [`Fusion::try_forward`]; uses the clip embeddings.
    ///
    /// # Errors
    /// [`FusionError`] on a shape mismatch.
    pub fn try_forward(
        &self,
        features: &[ModalityFeatures],
        presence: &Tensor<2>,
    ) -> Result<FusionOutput, FusionError> {
        check_shapes(features, presence, &self.input_dims)?;
        let mut hs = Vec::with_capacity(features.len());
        let mut scores = Vec::with_capacity(features.len());
        for (m, (f, proj)) in features.iter().zip(&self.proj).enumerate() {
            let p = column(presence, m);
            let absent = p.lower_elem(0.5);
            // Absent samples' inputs are replaced by zeros before anything reads them.
            let x = f
                .clip
                .clone()
                .mask_where(absent.clone().expand(f.clip.dims()), f.clip.zeros_like());
            let h = proj.forward(x);
            let h = h
                .clone()
                .mask_where(absent.expand(h.dims()), h.zeros_like());
            scores.push(self.score.forward(h.clone().tanh()));
            hs.push(h);
        }
        let scores = Tensor::cat(scores, 1) + self.modality_bias.val().unsqueeze::<2>();
        let w = masked_softmax(scores, presence.clone());
        let h = Tensor::stack::<3>(hs, 1); // [B, M, dim]
        let fused = (h * w.clone().unsqueeze_dim::<3>(2))
            .sum_dim(1)
            .squeeze_dim::<2>(1);
        Ok(FusionOutput {
            fused,
            modality_weights: Some(w),
            cross_weights: None,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Cross-modal
// ---------------------------------------------------------------------------------------

/// Configuration of [`CrossModalFusion`].
#[derive(Config, Debug)]
pub struct CrossModalFusionConfig {
    /// Widths `[D_0, D_1]` of the two modalities' tokens (exactly two).
    pub input_dims: Vec<usize>,
    /// Common width (divisible by `heads`); the output is `2 * dim`.
    #[config(default = 128)]
    pub dim: usize,
    /// Attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// Cross-attention layers (both directions updated in parallel in each).
    #[config(default = 1)]
    pub layers: usize,
    /// Feed-forward hidden width after each cross-attention.
    #[config(default = 256)]
    pub ff_dim: usize,
    /// Dropout (attention weights, residual branches, feed-forward), training only.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Feed-forward activation.
    #[config(default = "ActivationKind::Gelu")]
    pub activation: ActivationKind,
}

impl CrossModalFusionConfig {
    /// Check the configuration; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        check_dims(prefix, &self.input_dims)?;
        if self.input_dims.len() != 2 {
            return Err(invalid(
                &format!("{prefix}.strategy"),
                "cross_modal",
                &format!(
                    "needs exactly 2 modalities, got {} (use concat or attention)",
                    self.input_dims.len()
                ),
            ));
        }
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
        check_dropout(&format!("{prefix}.dropout"), self.dropout)
    }

    /// Validate (keys under `fusion`) and build the layer on `device`.
    pub fn init(&self, device: &Device) -> Result<CrossModalFusion, ModelError> {
        self.validate("fusion")?;
        let stream = || CrossStream {
            norm_q: LayerNormConfig::new(self.dim).init(device),
            norm_kv: LayerNormConfig::new(self.dim).init(device),
            attn: MultiHeadAttentionConfig::new(self.dim, self.heads)
                .with_dropout(self.dropout)
                .init(device),
            norm_ff: LayerNormConfig::new(self.dim).init(device),
            ff: PositionWiseFeedForwardConfig::new(self.dim, self.ff_dim)
                .with_dropout(self.dropout)
                .with_activation(self.activation.config())
                .init(device),
        };
        let layers = (0..self.layers)
            .map(|_| CrossModalLayer {
                streams: vec![stream(), stream()],
                dropout: DropoutConfig::new(self.dropout).init(),
            })
            .collect();
        Ok(CrossModalFusion {
            proj: self
                .input_dims
                .iter()
                .map(|&d| LinearConfig::new(d, self.dim).init(device))
                .collect(),
            layers,
            norm: (0..2)
                .map(|_| LayerNormConfig::new(self.dim).init(device))
                .collect(),
            input_dims: self.input_dims.clone(),
        })
    }
}

/// One direction of a [`CrossModalLayer`]: this modality's steps attend to the other's.
#[derive(Module, Debug)]
pub struct CrossStream {
    norm_q: LayerNorm,
    norm_kv: LayerNorm,
    attn: MultiHeadAttention,
    norm_ff: LayerNorm,
    ff: PositionWiseFeedForward,
}

/// One cross-attention layer: both directions, updated in parallel.
#[derive(Module, Debug)]
pub struct CrossModalLayer {
    streams: Vec<CrossStream>,
    dropout: Dropout,
}

/// Cross-modal fusion of two token sequences `[B, T_0, D_0]`, `[B, T_1, D_1]` to
/// `[B, 2 dim]` (`M = 2`).
///
/// Let `e_i = time_mask_i * p_i` (a modality's steps are all invalid when it is absent),
/// `g_i = 1` if sample has a valid step of modality `i`, else 0. Tokens are zeroed where
/// `e_i = 0` and projected: `x_i = e_i * W_i tok_i`. Each layer, for `i` and `j = 1 - i`:
///
/// ```text
/// c_i = g_j * drop(MHA_i(q = LN(x_i), k = v = LN(x_j), keys with e_j = 0 masked))
/// y_i = x_i + c_i;  y_i = e_i * (y_i + drop(FF_i(LN(y_i))))
/// ```
///
/// and finally `z_i = p_i * masked_mean(LN(x_i), e_i)`, `fused = [z_0, z_1]`. So an absent
/// modality's tokens reach nothing: its own stream is zero, and the other stream's
/// cross-attention context is gated off (`g_j = 0`), leaving that stream's self path (its
/// projected tokens and feed-forward). Masked steps are neither keys nor outputs.
#[derive(Module, Debug)]
pub struct CrossModalFusion {
    proj: Vec<Linear>,
    layers: Vec<CrossModalLayer>,
    norm: Vec<LayerNorm>,
    #[module(skip)]
    input_dims: Vec<usize>,
}

impl CrossModalFusion {
    /// Width of the output (`2 * dim`). Reads the shape without initialising parameters.
    pub fn output_dim(&self) -> usize {
        self.proj.iter().map(|p| p.weight.lazy_shape()[1]).sum()
    }

    /// See [`Fusion::try_forward`]; uses the token sequences (or the clip embeddings as
    /// single tokens).
    ///
    /// # Errors
    /// [`FusionError`] on a shape mismatch.
    pub fn try_forward(
        &self,
        features: &[ModalityFeatures],
        presence: &Tensor<2>,
    ) -> Result<FusionOutput, FusionError> {
        check_shapes(features, presence, &self.input_dims)?;
        let mut xs = Vec::with_capacity(2);
        let mut valid = Vec::with_capacity(2); // e_i: [B, T_i]
        let mut gates = Vec::with_capacity(2); // g_i: [B, 1, 1]
        for (m, (f, proj)) in features.iter().zip(&self.proj).enumerate() {
            let tokens = f
                .tokens
                .clone()
                .unwrap_or_else(|| f.clip.clone().unsqueeze_dim::<3>(1));
            let [b, t, _] = tokens.dims();
            let e = match &f.time_mask {
                Some(mask) => mask.clone(),
                None => Tensor::ones([b, t], &tokens.device()),
            } * column(presence, m);
            let g = e
                .clone()
                .sum_dim(1)
                .greater_elem(0.0)
                .float()
                .reshape([b, 1, 1]);
            let x = mask_steps(proj.forward(zero_invalid(tokens, &e)), Some(&e));
            xs.push(x);
            valid.push(e);
            gates.push(g);
        }
        let mut weights = Vec::new();
        for layer in &self.layers {
            let mut next = Vec::with_capacity(2);
            weights.clear();
            for (i, stream) in layer.streams.iter().enumerate() {
                let j = 1 - i;
                let q = stream.norm_q.forward(xs[i].clone());
                let kv = stream.norm_kv.forward(xs[j].clone());
                let out = stream
                    .attn
                    .forward(MhaInput::new(q, kv.clone(), kv).mask_pad(padding_mask(&valid[j])));
                let c = layer.dropout.forward(out.context) * gates[j].clone();
                let y = xs[i].clone() + c;
                let ff = layer
                    .dropout
                    .forward(stream.ff.forward(stream.norm_ff.forward(y.clone())));
                next.push(mask_steps(y + ff, Some(&valid[i])));
                let [b, ti] = valid[i].dims();
                let [_, tj] = valid[j].dims();
                weights.push(
                    out.weights
                        * gates[j].clone().unsqueeze_dim::<4>(3)
                        * valid[i].clone().reshape([b, 1, ti, 1])
                        * valid[j].clone().reshape([b, 1, 1, tj]),
                );
            }
            xs = next;
        }
        let pooled: Vec<Tensor<2>> = xs
            .into_iter()
            .zip(&self.norm)
            .zip(&valid)
            .map(|((x, norm), e)| masked_mean(norm.forward(x), Some(e)))
            .collect();
        let cross_weights = match (weights.pop(), weights.pop()) {
            (Some(second_to_first), Some(first_to_second)) => Some(CrossWeights {
                first_to_second,
                second_to_first,
            }),
            _ => None,
        };
        Ok(FusionOutput {
            fused: Tensor::cat(pooled, 1),
            modality_weights: None,
            cross_weights,
        })
    }
}

/// Replace the tokens at steps with `e = 0` by zeros (`[B, T, D]`, `e` `[B, T]`), so that
/// nothing downstream reads them; unlike a multiplication this also holds for non-finite
/// values.
fn zero_invalid(tokens: Tensor<3>, e: &Tensor<2>) -> Tensor<3> {
    let [b, t, d] = tokens.dims();
    let invalid = e
        .clone()
        .lower_elem(0.5)
        .reshape([b, t, 1])
        .expand([b, t, d]);
    tokens.clone().mask_where(invalid, tokens.zeros_like())
}

// ---------------------------------------------------------------------------------------
// Fusion
// ---------------------------------------------------------------------------------------

/// Configuration of [`Fusion`]: the union of the three strategies' settings (each uses the
/// fields it needs).
#[derive(Config, Debug)]
pub struct FusionConfig {
    /// Width `D_m` of each modality's embedding, in presence-column order.
    pub input_dims: Vec<usize>,
    /// Which fusion.
    #[config(default = "FusionStrategy::Concat")]
    pub strategy: FusionStrategy,
    /// `attention` / `cross_modal`: common width.
    #[config(default = 128)]
    pub dim: usize,
    /// `concat`: what an absent modality contributes.
    #[config(default = "MissingEmbedding::Zeros")]
    pub missing: MissingEmbedding,
    /// `cross_modal`: attention heads.
    #[config(default = 4)]
    pub heads: usize,
    /// `cross_modal`: layers.
    #[config(default = 1)]
    pub layers: usize,
    /// `cross_modal`: feed-forward hidden width.
    #[config(default = 256)]
    pub ff_dim: usize,
    /// `cross_modal`: dropout (training only).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// `cross_modal`: feed-forward activation.
    #[config(default = "ActivationKind::Gelu")]
    pub activation: ActivationKind,
}

impl FusionConfig {
    /// The [`ConcatFusionConfig`] this configuration describes.
    pub fn concat(&self) -> ConcatFusionConfig {
        ConcatFusionConfig::new(self.input_dims.clone()).with_missing(self.missing)
    }

    /// The [`AttentionFusionConfig`] this configuration describes.
    pub fn attention(&self) -> AttentionFusionConfig {
        AttentionFusionConfig::new(self.input_dims.clone()).with_dim(self.dim)
    }

    /// The [`CrossModalFusionConfig`] this configuration describes.
    pub fn cross_modal(&self) -> CrossModalFusionConfig {
        CrossModalFusionConfig::new(self.input_dims.clone())
            .with_dim(self.dim)
            .with_heads(self.heads)
            .with_layers(self.layers)
            .with_ff_dim(self.ff_dim)
            .with_dropout(self.dropout)
            .with_activation(self.activation)
    }

    /// Width of the fused output.
    pub fn output_dim(&self) -> usize {
        match self.strategy {
            FusionStrategy::Concat => self.input_dims.iter().sum(),
            FusionStrategy::Attention => self.dim,
            FusionStrategy::CrossModal => 2 * self.dim,
        }
    }

    /// Check the fields the chosen strategy uses; keys are reported as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        match self.strategy {
            FusionStrategy::Concat => self.concat().validate(prefix),
            FusionStrategy::Attention => self.attention().validate(prefix),
            FusionStrategy::CrossModal => self.cross_modal().validate(prefix),
        }
    }

    /// Validate (keys under `fusion`) and build the chosen fusion on `device`.
    pub fn init(&self, device: &Device) -> Result<Fusion, ModelError> {
        Ok(match self.strategy {
            FusionStrategy::Concat => Fusion::Concat(self.concat().init(device)?),
            FusionStrategy::Attention => Fusion::Attention(self.attention().init(device)?),
            FusionStrategy::CrossModal => Fusion::CrossModal(self.cross_modal().init(device)?),
        })
    }
}

/// One of the fusions, chosen by [`FusionConfig::strategy`].
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Fusion {
    /// Concatenation.
    Concat(ConcatFusion),
    /// Attention over present modalities.
    Attention(AttentionFusion),
    /// Cross-attention between two token sequences.
    CrossModal(CrossModalFusion),
}

impl Fusion {
    /// Visit the parameters that only the modality at `index` (its position in the
    /// features) feeds: its projection `W_index` under `attention` and `cross_modal`;
    /// nothing under `concat`. Shared parameters (scorer, the per-modality bias vector,
    /// cross-attention layers) are not visited. Out-of-range indices visit nothing.
    pub fn visit_modality_projection<V: burn::module::ModuleVisitor>(
        &self,
        index: usize,
        visitor: &mut V,
    ) {
        let proj = match self {
            Fusion::Concat(_) => None,
            Fusion::Attention(f) => f.proj.get(index),
            Fusion::CrossModal(f) => f.proj.get(index),
        };
        if let Some(p) = proj {
            p.visit(visitor);
        }
    }

    /// Width of the fused output.
    pub fn output_dim(&self) -> usize {
        match self {
            Fusion::Concat(f) => f.output_dim(),
            Fusion::Attention(f) => f.output_dim(),
            Fusion::CrossModal(f) => f.output_dim(),
        }
    }

    /// Fuse one [`ModalityFeatures`] per modality (in presence-column order) under
    /// `presence` `[B, M]` (1 present, 0 absent). Returns `[B, output_dim]` and, for
    /// `attention` and `cross_modal`, the attention weights.
    ///
    /// # Errors
    /// [`FusionError`] when the number of modalities, the presence shape or a modality's
    /// feature shape does not match the configuration.
    pub fn try_forward(
        &self,
        features: &[ModalityFeatures],
        presence: &Tensor<2>,
    ) -> Result<FusionOutput, FusionError> {
        match self {
            Fusion::Concat(f) => f.try_forward(features, presence),
            Fusion::Attention(f) => f.try_forward(features, presence),
            Fusion::CrossModal(f) => f.try_forward(features, presence),
        }
    }

    /// [`try_forward`](Self::try_forward) for shapes known to be right.
    ///
    /// # Panics
    /// With the [`FusionError`] message on a shape mismatch (a programming error: shapes are
    /// fixed by the model).
    pub fn forward(&self, features: &[ModalityFeatures], presence: &Tensor<2>) -> FusionOutput {
        self.try_forward(features, presence)
            .unwrap_or_else(|e| panic!("Fusion::forward: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn masked_softmax_ignores_absent_entries() {
        let d = Device::flex();
        let s = Tensor::<2>::from_data(
            TensorData::new(
                vec![1.0f32, 2.0, 3.0, 50.0, -3.0, 7.0, 0.5, 0.5, 0.5],
                [3, 3],
            ),
            &d,
        );
        let p = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0], [3, 3]),
            &d,
        );
        let w = masked_softmax(s, p)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let e = (1f32 / (1.0 + 2f32.exp()), 2f32.exp() / (1.0 + 2f32.exp()));
        assert!((w[0] - e.0).abs() < 1e-6 && w[1] == 0.0 && (w[2] - e.1).abs() < 1e-6);
        assert_eq!(&w[3..6], &[0.0, 1.0, 0.0]);
        assert_eq!(&w[6..], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn invalid_configs_name_the_key() {
        let d = Device::flex();
        let e = FusionConfig::new(vec![4, 4, 4])
            .with_strategy(FusionStrategy::CrossModal)
            .init(&d)
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("fusion.strategy = \"cross_modal\""),
            "{e}"
        );
        let e = FusionConfig::new(vec![4, 0])
            .validate("fusion")
            .unwrap_err();
        assert!(
            e.to_string().starts_with("fusion.input_dims = [4, 0]"),
            "{e}"
        );
        let e = FusionConfig::new(vec![4, 4])
            .with_strategy(FusionStrategy::CrossModal)
            .with_dim(6)
            .validate("fusion")
            .unwrap_err();
        assert!(e.to_string().starts_with("fusion.dim = 6"), "{e}");
    }

    #[test]
    fn shape_errors_are_reported() {
        let d = Device::flex();
        let f = FusionConfig::new(vec![3, 2]).init(&d).unwrap();
        let p = Tensor::<2>::ones([2, 2], &d);
        let e = f
            .try_forward(
                &[ModalityFeatures::from_clip(Tensor::zeros([2, 3], &d))],
                &p,
            )
            .unwrap_err();
        assert_eq!(
            e,
            FusionError::ModalityCount {
                expected: 2,
                got: 1
            }
        );
        let feats = [
            ModalityFeatures::from_clip(Tensor::zeros([2, 3], &d)),
            ModalityFeatures::from_clip(Tensor::zeros([2, 4], &d)),
        ];
        let e = f.try_forward(&feats, &p).unwrap_err();
        assert!(
            matches!(e, FusionError::FeatureShape { modality: 1, .. }),
            "{e}"
        );
    }
}
