//! The training loss and gradient coverage of inactive encoders (design 2.4).
//!
//! An encoder is *inactive* in a batch when its modality is absent from every sample of it
//! (modality dropout in `batch` mode, a batch of clips without audio, ...). Whether such an
//! encoder has gradient entries at all depends on [`Coverage`] and on the blanking strategy;
//! what the optimiser then does with them is [`crate::config::InactiveUpdate`]'s business.

use avfuse_models::{AvInput, AvModel, Modality};
use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Tensor, TensorData};

use crate::config::{Coverage, FusionConfig};

/// Modalities absent from every sample of a batch, from its `[B, M]` host presence
/// (row-major, [`Modality`] column order).
pub fn inactive_modalities(presence: &[f32]) -> Vec<Modality> {
    let m = Modality::ALL.len();
    Modality::ALL
        .into_iter()
        .filter(|&mo| presence.chunks(m).all(|p| p[mo as usize] == 0.0))
        .collect()
}

/// `sum(sum(param))` over the visited trainable parameters (running statistics excluded).
struct ParamSum {
    sum: Option<Tensor<1>>,
}

impl ModuleVisitor for ParamSum {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !param.is_require_grad() {
            return;
        }
        let s = param.val().sum();
        self.sum = Some(match self.sum.take() {
            Some(acc) => acc + s,
            None => s,
        });
    }
}

/// `scale * Σ_m Σ_params sum(param)` over the encoders of `inactive` (design 2.4's dummy
/// loss), or `None` when there is nothing to add. Its gradient is `scale` for every element
/// of every inactive parameter; with `scale = 0` the parameters join the graph with zero
/// gradients.
pub fn dummy_term(model: &AvModel, inactive: &[Modality], scale: f64) -> Option<Tensor<1>> {
    let mut v = ParamSum { sum: None };
    for &m in inactive {
        model.visit_encoder(m, &mut v);
    }
    v.sum.map(|s| s * scale)
}

/// Mean binary cross-entropy with logits, PyTorch's numerically stable form
/// `max(x, 0) - x * y + log(1 + exp(-|x|))`. `logits`, `labels`: `[B, 1]`; returns `[1]`.
///
/// With `class_weights = Some([w_real, w_fake])` each sample's term is weighted by its
/// class's weight and the sum divided by the sum of the weights (PyTorch's
/// `CrossEntropyLoss(weight=...)` convention, a weighted mean).
pub fn bce_with_logits(
    logits: Tensor<2>,
    labels: Tensor<2>,
    class_weights: Option<[f64; 2]>,
) -> Tensor<1> {
    let per_sample =
        relu(logits.clone()) - logits.clone() * labels.clone() + logits.abs().neg().exp().log1p();
    match class_weights {
        None => per_sample.mean(),
        Some([w0, w1]) => {
            let w = labels * (w1 - w0) + w0;
            (per_sample * w.clone()).sum() / w.sum()
        }
    }
}

/// Mean softmax cross-entropy (PyTorch's `CrossEntropyLoss`). `logits`: `[B, K]`, `targets`:
/// `[B, 1]` class indices `0..K` as floats; returns `[1]`. The one-hot targets are built on
/// the device by comparison with `0..K`, with no read back to the host.
///
/// With `class_weights = Some(w)` (`K` weights) each sample's term is weighted by its
/// class's weight and the sum divided by the sum of the weights (PyTorch's
/// `CrossEntropyLoss(weight=...)`, a weighted mean).
pub fn cross_entropy_with_logits(
    logits: Tensor<2>,
    targets: Tensor<2>,
    class_weights: Option<&[f64]>,
) -> Tensor<1> {
    let [b, k] = logits.dims();
    let device = logits.device();
    let classes = Tensor::<1, burn::tensor::Int>::arange(0..k as i64, &device)
        .float()
        .reshape([1, k])
        .expand([b, k]);
    let one_hot = targets.expand([b, k]).equal(classes).float();
    let nll = (log_softmax(logits, 1) * one_hot.clone()).sum_dim(1).neg();
    match class_weights {
        None => nll.mean(),
        Some(w) => {
            let w = Tensor::<1>::from_data(
                TensorData::new(w.iter().map(|&x| x as f32).collect::<Vec<_>>(), [k]),
                &device,
            )
            .reshape([1, k]);
            let per_sample = (one_hot * w).sum_dim(1);
            (nll * per_sample.clone()).sum() / per_sample.sum()
        }
    }
}

/// The classification loss for the head's output: [`bce_with_logits`] for a binary head
/// (`[B, 1]` logits; `class_weights` then `[w_real, w_fake]`), otherwise
/// [`cross_entropy_with_logits`] over the `K` classes.
pub fn classification_loss(
    logits: Tensor<2>,
    targets: Tensor<2>,
    class_weights: Option<&[f64]>,
) -> Tensor<1> {
    if logits.dims()[1] == 1 {
        let w = class_weights.and_then(|w| match w {
            [w0, w1] => Some([*w0, *w1]),
            _ => None,
        });
        bce_with_logits(logits, targets, w)
    } else {
        cross_entropy_with_logits(logits, targets, class_weights)
    }
}

/// The training loss of one batch: the model run with `fusion.blanking` and the modality
/// dropout `feature_scale`, the [`classification_loss`] against `labels` (`[B, 1]`: binary
/// labels or class indices, optionally class-weighted), plus the dummy coverage term for
/// the `inactive` encoders when `fusion.coverage` is `dummy`.
///
/// Returns `(loss, data_loss)`: the loss to differentiate and the classification loss alone
/// (the value to report; the two differ only by the dummy term).
pub fn training_loss(
    model: &AvModel,
    input: AvInput,
    labels: Tensor<2>,
    fusion: &FusionConfig,
    feature_scale: f64,
    inactive: &[Modality],
    class_weights: Option<&[f64]>,
) -> (Tensor<1>, Tensor<1>) {
    let logits = model.forward_scaled(input, fusion.blanking, feature_scale);
    let bce = classification_loss(logits, labels, class_weights);
    let loss = match fusion.coverage {
        Coverage::Dummy => match dummy_term(model, inactive, fusion.coverage_scale) {
            Some(d) => bce.clone() + d,
            None => bce.clone(),
        },
        Coverage::None | Coverage::ZeroAfterEncoder => bce.clone(),
    };
    (loss, bce)
}

/// Removes the gradients of the visited parameters.
struct RemoveGrads<'a>(&'a mut GradientsParams);

impl ModuleVisitor for RemoveGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.remove::<D>(param.id);
    }
}

/// `inactive_update: skip`: drop the gradient entries of every parameter only the
/// `inactive` modalities feed (their encoders and their fusion projections,
/// [`AvModel::visit_modality_params`]), so the optimiser step leaves those parameters and
/// their AdamW moments untouched (no weight decay, no moment decay) even where
/// [`Coverage`] put them in the graph.
pub fn remove_encoder_grads(model: &AvModel, inactive: &[Modality], grads: &mut GradientsParams) {
    for &m in inactive {
        model.visit_modality_params(m, &mut RemoveGrads(grads));
    }
}

/// Sum of squared gradients of the visited parameters, on the device.
pub(crate) struct SquaredSum<'a> {
    pub(crate) grads: &'a GradientsParams,
    pub(crate) sum: Option<Tensor<1>>,
}

impl ModuleVisitor for SquaredSum<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let sq = g.powi_scalar(2).sum();
            self.sum = Some(match self.sum.take() {
                Some(s) => s + sq,
                None => sq,
            });
        }
    }
}

/// L2 norm of the gradient of one modality's encoder, read back to the host (0 when it has
/// none).
pub fn encoder_grad_norm(model: &AvModel, m: Modality, grads: &GradientsParams) -> f64 {
    let mut v = SquaredSum { grads, sum: None };
    model.visit_encoder(m, &mut v);
    v.sum
        .map_or(0.0, |s| f64::from(s.into_scalar::<f32>()).sqrt())
}
