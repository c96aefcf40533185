//! Optimisers with PyTorch's semantics and global gradient-norm clipping.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;

use crate::config::{OptimizerKind, TrainingConfig};
use crate::coverage::SquaredSum;

/// The optimiser `training` describes, with PyTorch's semantics:
/// - `adamw`: `torch.optim.AdamW(lr, betas=(beta1, beta2), eps, weight_decay)`, decoupled
///   weight decay `p *= 1 - lr * wd`;
/// - `sgd`: `torch.optim.SGD(lr, momentum, dampening=0, weight_decay, nesterov)`: weight decay
///   added to the gradient, then momentum (Burn's default dampening is 0.1; set to 0 here).
pub fn build_optimizer(t: &TrainingConfig) -> ModuleOptimizer {
    match t.optimizer {
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_beta_1(t.beta1 as f32)
            .with_beta_2(t.beta2 as f32)
            .with_epsilon(t.eps as f32)
            .with_weight_decay(t.weight_decay as f32)
            .init(),
        OptimizerKind::Sgd => SgdConfig::new()
            .with_weight_decay(
                (t.weight_decay > 0.0)
                    .then(|| burn::optim::decay::WeightDecayConfig::new(t.weight_decay as f32)),
            )
            .with_momentum((t.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(t.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(t.nesterov)
            }))
            .init(),
    }
}

/// L2 norm of all the gradients of `model`'s parameters together, `[1]` on the device
/// (`None` when no parameter has a gradient).
pub fn global_grad_norm<M: Module>(model: &M, grads: &GradientsParams) -> Option<Tensor<1>> {
    let mut v = SquaredSum { grads, sum: None };
    model.visit(&mut v);
    v.sum.map(|s| s.sqrt())
}

/// Multiplies every gradient by a `[1]` device scalar.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    coef: Tensor<1>,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let coef = self.coef.clone().reshape([1; D]);
            self.grads.register::<D>(param.id, g * coef);
        }
    }
}

/// PyTorch's `torch.nn.utils.clip_grad_norm_(params, max_norm)`: one L2 norm over all the
/// gradients together (not per tensor, unlike Burn's built-in clipping); when it exceeds
/// `max_norm` every gradient is multiplied by `max_norm / (norm + 1e-6)`. The coefficient
/// stays on the device (no host sync). Returns the norm before clipping (`[1]`), as PyTorch.
pub fn clip_grad_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> Option<Tensor<1>> {
    let norm = global_grad_norm(model, grads)?;
    let coef = (norm.clone() + 1e-6)
        .recip()
        .mul_scalar(max_norm)
        .clamp_max(1.0);
    model.visit(&mut ScaleGrads { grads, coef });
    Some(norm)
}
