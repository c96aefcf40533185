//! Functional forms of the dropout family, each with an explicit `training` flag.
//!
//! The plain functions draw their seed from the process-wide stream
//! ([`super::next_seed`]) only when they actually drop something; [`dropout_family`]
//! takes an explicit seed.

use burn::tensor::Tensor;

use super::ext::masked_affine;
use super::kernel::{MaskLayout, MaskedAffine};
use super::{DropoutError, check_probability, next_seed};

/// `alpha' = -scale * alpha` of SELU: the value SELU saturates to for large negative inputs.
pub const ALPHA_PRIME: f64 = -1.758_099_340_847_376_6;

/// Which axis of a `[*, *, H]` sequence is time, for [`Variant::Locked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeAxis {
    /// `[T, B, H]` (AWD-LSTM's layout).
    TimeMajor,
    /// `[B, T, H]`.
    BatchMajor,
}

/// A member of the dropout family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Element-wise inverted dropout.
    Dropout,
    /// Channel dropout on `[N, C, L]` or unbatched `[C, L]`.
    Dropout1d,
    /// Channel dropout on `[N, C, H, W]`.
    Dropout2d,
    /// Channel dropout on `[N, C, D, H, W]` or unbatched `[C, D, H, W]`.
    Dropout3d,
    /// Element-wise alpha dropout (keeps SELU's mean and variance).
    Alpha,
    /// Alpha dropout with one mask per `(n, c)` channel of a `[N, C, ...]` input.
    FeatureAlpha,
    /// Stochastic depth: one mask per sample of a `[B, ...]` input.
    DropPath {
        /// Divide kept samples by the keep probability (timm's `scale_by_keep`).
        scale_by_keep: bool,
    },
    /// One `[B, H]` mask shared over time.
    Locked(TimeAxis),
}

impl Variant {
    /// Every member of the family (drop path with `scale_by_keep`, locked dropout in both
    /// time layouts), for tests and benchmarks that sweep the whole family.
    pub const ALL: [Variant; 9] = [
        Variant::Dropout,
        Variant::Dropout1d,
        Variant::Dropout2d,
        Variant::Dropout3d,
        Variant::Alpha,
        Variant::FeatureAlpha,
        Variant::DropPath {
            scale_by_keep: true,
        },
        Variant::Locked(TimeAxis::TimeMajor),
        Variant::Locked(TimeAxis::BatchMajor),
    ];

    /// Layer name used in errors.
    pub fn name(&self) -> &'static str {
        match self {
            Variant::Dropout => "Dropout",
            Variant::Dropout1d => "Dropout1d",
            Variant::Dropout2d => "Dropout2d",
            Variant::Dropout3d => "Dropout3d",
            Variant::Alpha => "AlphaDropout",
            Variant::FeatureAlpha => "FeatureAlphaDropout",
            Variant::DropPath { .. } => "DropPath",
            Variant::Locked(_) => "LockedDropout",
        }
    }

    /// The mask layout for an input of shape `dims`, or a rank error.
    pub fn layout(&self, dims: &[usize]) -> Result<MaskLayout, DropoutError> {
        let numel: usize = dims.iter().product();
        let rest = |from: usize| dims[from..].iter().product::<usize>();
        let rank_error = |expected| DropoutError::Rank {
            layer: self.name(),
            expected,
            got: dims.len(),
        };
        let channel = |outer: usize, from: usize| MaskLayout {
            outer,
            bcast: rest(from),
            inner: 1,
        };
        Ok(match self {
            Variant::Dropout | Variant::Alpha => MaskLayout::elementwise(numel),
            Variant::Dropout1d => match dims.len() {
                3 => channel(dims[0] * dims[1], 2),
                2 => channel(dims[0], 1),
                _ => return Err(rank_error("2-D or 3-D input ([C, L] or [N, C, L])")),
            },
            Variant::Dropout2d => match dims.len() {
                4 => channel(dims[0] * dims[1], 2),
                _ => {
                    return Err(rank_error(
                        "4-D input [N, C, H, W] (use Dropout1d for [N, C, L]; unsqueeze an unbatched [C, H, W])",
                    ));
                }
            },
            Variant::Dropout3d => match dims.len() {
                5 => channel(dims[0] * dims[1], 2),
                4 => channel(dims[0], 1),
                _ => {
                    return Err(rank_error(
                        "4-D or 5-D input ([C, D, H, W] or [N, C, D, H, W])",
                    ));
                }
            },
            Variant::FeatureAlpha => match dims.len() {
                0 | 1 => return Err(rank_error("an input of rank >= 2 ([N, C, ...])")),
                _ => channel(dims[0] * dims[1], 2),
            },
            Variant::DropPath { .. } => match dims.len() {
                0 => return Err(rank_error("an input of rank >= 1 ([B, ...])")),
                _ => channel(dims[0], 1),
            },
            Variant::Locked(axis) => match (dims.len(), axis) {
                (3, TimeAxis::TimeMajor) => MaskLayout {
                    outer: 1,
                    bcast: dims[0],
                    inner: dims[1] * dims[2],
                },
                (3, TimeAxis::BatchMajor) => MaskLayout {
                    outer: dims[0],
                    bcast: dims[1],
                    inner: dims[2],
                },
                _ => return Err(rank_error("3-D input ([T, B, H] or [B, T, H])")),
            },
        })
    }

    /// Kernel parameters for probability `p` (already checked) and a layout.
    pub fn params(&self, p: f64, layout: MaskLayout, seed: u64) -> MaskedAffine {
        let keep = 1.0 - p;
        if p >= 1.0 {
            // Everything dropped, to exact zeros (alpha variants too, as PyTorch's p == 1).
            return MaskedAffine {
                layout,
                seed,
                threshold: 0,
                kept_scale: 0.0,
                kept_bias: 0.0,
                dropped_value: 0.0,
            };
        }
        let threshold = MaskedAffine::threshold_for(keep);
        let (kept_scale, kept_bias, dropped_value) = match self {
            Variant::Alpha | Variant::FeatureAlpha => {
                let a = 1.0 / ((ALPHA_PRIME * ALPHA_PRIME * p + 1.0) * keep).sqrt();
                let b = -a * ALPHA_PRIME * p;
                (a, b, a * ALPHA_PRIME + b)
            }
            Variant::DropPath {
                scale_by_keep: false,
            } => (1.0, 0.0, 0.0),
            _ => (1.0 / keep, 0.0, 0.0),
        };
        MaskedAffine {
            layout,
            seed,
            threshold,
            kept_scale,
            kept_bias,
            dropped_value,
        }
    }
}

/// Apply a dropout variant with an explicit seed.
///
/// Checks `p` and the rank first (also when not training, as PyTorch does), then returns
/// `x` unchanged when `!training`, `p == 0` or `x` is empty; otherwise runs the fused kernel.
pub fn dropout_family<const D: usize>(
    x: Tensor<D>,
    variant: Variant,
    p: f64,
    training: bool,
    seed: u64,
) -> Result<Tensor<D>, DropoutError> {
    apply(x, variant, p, training, Some(seed))
}

fn apply<const D: usize>(
    x: Tensor<D>,
    variant: Variant,
    p: f64,
    training: bool,
    seed: Option<u64>,
) -> Result<Tensor<D>, DropoutError> {
    let p = check_probability(p)?;
    let layout = variant.layout(&x.dims())?;
    if !training || p == 0.0 || layout.numel() == 0 {
        return Ok(x);
    }
    let seed = seed.unwrap_or_else(next_seed);
    Ok(masked_affine(x, variant.params(p, layout, seed)))
}

/// Element-wise dropout: `x * m / (1-p)`, `m ~ Bernoulli(1-p)` per element. Any shape.
pub fn dropout<const D: usize>(
    x: Tensor<D>,
    p: f64,
    training: bool,
) -> Result<Tensor<D>, DropoutError> {
    apply(x, Variant::Dropout, p, training, None)
}

/// Channel dropout on `[N, C, L]` or unbatched `[C, L]`: whole channels zeroed.
pub fn dropout1d<const D: usize>(
    x: Tensor<D>,
    p: f64,
    training: bool,
) -> Result<Tensor<D>, DropoutError> {
    apply(x, Variant::Dropout1d, p, training, None)
}

/// Channel dropout on `[N, C, H, W]`.
pub fn dropout2d<const D: usize>(
    x: Tensor<D>,
    p: f64,
    training: bool,
) -> Result<Tensor<D>, DropoutError> {
    apply(x, Variant::Dropout2d, p, training, None)
}

/// Channel dropout on `[N, C, D, H, W]` or unbatched `[C, D, H, W]`.
pub fn dropout3d<const D: usize>(
    x: Tensor<D>,
    p: f64,
    training: bool,
) -> Result<Tensor<D>, DropoutError> {
    apply(x, Variant::Dropout3d, p, training, None)
}

/// Alpha dropout (element-wise); keeps zero mean / unit variance inputs so. Any shape.
pub fn alpha_dropout<const D: usize>(
    x: Tensor<D>,
    p: f64,
    training: bool,
) -> Result<Tensor<D>, DropoutError> {
    apply(x, Variant::Alpha, p, training, None)
}

/// Alpha dropout with one mask per `(n, c)` channel of `[N, C, ...]` (rank >= 2).
pub fn feature_alpha_dropout<const D: usize>(
    x: Tensor<D>,
    p: f64,
    training: bool,
) -> Result<Tensor<D>, DropoutError> {
    apply(x, Variant::FeatureAlpha, p, training, None)
}

/// Stochastic depth on `[B, ...]`: each sample's whole tensor kept (scaled by `1/(1-p)` when
/// `scale_by_keep`) or zeroed. Identity when not training or `p == 0`, as timm's `drop_path`.
pub fn drop_path<const D: usize>(
    x: Tensor<D>,
    p: f64,
    training: bool,
    scale_by_keep: bool,
) -> Result<Tensor<D>, DropoutError> {
    apply(x, Variant::DropPath { scale_by_keep }, p, training, None)
}

/// Locked (variational) dropout on a 3-D sequence: one `[B, H]` mask for every time step.
pub fn locked_dropout(
    x: Tensor<3>,
    p: f64,
    training: bool,
    axis: TimeAxis,
) -> Result<Tensor<3>, DropoutError> {
    apply(x, Variant::Locked(axis), p, training, None)
}
