//! Learning-rate schedules, early stopping and global gradient-norm clipping.
//!
//! Everything here is plain `f64` state with serde, so a checkpoint can hold it and a resumed
//! run continues with bit-identical rates:
//!
//! - [`WarmupCosine`]: linear warm-up then cosine decay (stateless, per optimiser step).
//! - [`CosineWarmRestarts`]: PyTorch's `CosineAnnealingWarmRestarts`.
//! - [`ReduceLrOnPlateau`]: PyTorch's `ReduceLROnPlateau`.
//! - [`EarlyStopping`]: patience and an absolute `min_delta`.
//! - [`global_grad_norm`], [`clip_coef`], [`clip_grad_norm`]: `torch.nn.utils.clip_grad_norm_`
//!   (one L2 norm over **all** gradients, not per tensor) on host slices.
//!
//! The PyTorch schedulers are checked against sequences recorded from PyTorch itself
//! (`scripts/fixtures/make_schedule_fixtures.py` ->
//! `crates/avfuse-train/tests/fixtures/schedules.json`, replayed by `tests/schedules.rs`).

use serde::{Deserialize, Serialize};

/// An invalid scheduler or clipping argument; messages follow PyTorch's where it has one.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// `T_0` must be a positive integer.
    #[error("Expected positive integer T_0, but got {0}")]
    T0(u64),
    /// `T_mult` must be an integer >= 1.
    #[error("Expected integer T_mult >= 1, but got {0}")]
    TMult(u64),
    /// An explicit epoch passed to [`CosineWarmRestarts::step_to`] is negative or not finite.
    #[error("Expected non-negative epoch, but got {0}")]
    Epoch(f64),
    /// `ReduceLROnPlateau`'s factor must be < 1.0.
    #[error("Factor should be < 1.0, got {0}")]
    Factor(f64),
    /// A learning rate, bound or threshold that is not a finite number (or negative where
    /// that makes no sense); names the argument.
    #[error("{name} must be a finite number >= 0, got {value}")]
    NotFinite {
        /// Argument name, e.g. `base_lr`.
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// The global gradient norm is NaN or infinite; gradients were left unchanged.
    #[error("the total gradient norm is {0}: gradients contain NaN or Inf")]
    NonFiniteNorm(f64),
}

fn finite_non_negative(name: &'static str, value: f64) -> Result<f64, ScheduleError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ScheduleError::NotFinite { name, value })
    }
}

/// Linear warm-up from 0 to `base_lr` over `warmup_steps`, then cosine decay to `min_lr` at
/// `total_steps` (PyTorch's `LinearLR` + `CosineAnnealingLR` chained, stepped per batch).
///
/// Step `s` (0-based, the step about to be taken) gets
/// `base_lr * (s + 1) / warmup_steps` while `s < warmup_steps`, then
/// `min_lr + (base_lr - min_lr) * (1 + cos(pi * (s - warmup) / (total - warmup))) / 2`.
/// The schedule is stateless: resuming at step `s` gives the same rates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub base_lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Warm-up length in optimiser steps.
    pub warmup_steps: usize,
    /// Total optimiser steps of the run.
    pub total_steps: usize,
}

impl WarmupCosine {
    /// Learning rate for the 0-based step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        self.min_lr + (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
    }
}

/// Early stopping on a validation metric, with `patience` and an absolute `min_delta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Larger values are better when true.
    pub higher_is_better: bool,
    /// Epochs without improvement tolerated (0: never stop early).
    pub patience: usize,
    /// Minimum absolute change counted as an improvement.
    pub min_delta: f64,
    /// Best value so far.
    pub best: Option<f64>,
    /// Epoch (1-based) of the best value.
    pub best_epoch: usize,
    /// Consecutive epochs without improvement.
    pub bad_epochs: usize,
}

impl EarlyStopping {
    /// A fresh tracker.
    pub fn new(higher_is_better: bool, patience: usize, min_delta: f64) -> Self {
        Self {
            higher_is_better,
            patience,
            min_delta,
            best: None,
            best_epoch: 0,
            bad_epochs: 0,
        }
    }

    /// Record the metric of `epoch`; returns true when it is a new best (an improvement
    /// by more than `min_delta`, or the first value).
    pub fn update(&mut self, epoch: usize, value: f64) -> bool {
        let improved = match self.best {
            None => true,
            Some(best) if self.higher_is_better => value > best + self.min_delta,
            Some(best) => value < best - self.min_delta,
        };
        if improved {
            self.best = Some(value);
            self.best_epoch = epoch;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        improved
    }

    /// True when training should stop.
    pub fn should_stop(&self) -> bool {
        self.patience > 0 && self.bad_epochs >= self.patience
    }
}

/// Cosine annealing with warm restarts (SGDR); the exact state machine of
/// `torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0, T_mult, eta_min)` for one
/// parameter group whose initial rate is `base_lr`.
///
/// `lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2`, where `T_cur` is
/// the number of epochs (possibly fractional) since the last restart and `T_i = T_0 *
/// T_mult^i` the length of the current cycle, in epochs.
///
/// - [`CosineWarmRestarts::new`] performs PyTorch's initial `step()` (epoch 0): [`lr`](Self::lr)
///   is `base_lr`.
/// - [`step`](Self::step) is `scheduler.step()`: one whole epoch (or one batch, if the trainer
///   counts `T_0` in batches) further.
/// - [`step_to`](Self::step_to) is `scheduler.step(epoch)` with an explicit, possibly
///   fractional epoch, e.g. `epoch + i / iters` per batch. Both forms may be interleaved, as
///   in PyTorch (after `step_to(26.3)`, `step()` goes to epoch 27's state via `T_cur + 1`).
///
/// All state is serialisable; a deserialised scheduler continues with identical rates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CosineWarmRestarts {
    /// `eta_max`: the rate at the start of every cycle (the optimiser's initial lr).
    pub base_lr: f64,
    /// Length of the first cycle, in epochs (`T_0 >= 1`).
    pub t_0: u64,
    /// Cycle growth factor (`T_mult >= 1`, an integer as in PyTorch).
    pub t_mult: u64,
    /// Floor of the rate.
    pub eta_min: f64,
    /// Length of the current cycle (`T_i`, integer-valued; `f64` so it never overflows).
    t_i: f64,
    /// Epochs since the last restart (`T_cur`; fractional after [`Self::step_to`]).
    t_cur: f64,
    /// PyTorch's `last_epoch`: `floor` of the last epoch stepped to.
    last_epoch: i64,
    /// The current rate (`get_last_lr()[0]`).
    lr: f64,
}

impl CosineWarmRestarts {
    /// A scheduler at epoch 0 (PyTorch's constructor, including its initial `step()`).
    ///
    /// # Errors
    /// [`ScheduleError::T0`] when `t_0 == 0`, [`ScheduleError::TMult`] when `t_mult == 0`,
    /// [`ScheduleError::NotFinite`] for a negative or non-finite `base_lr` or `eta_min`.
    pub fn new(base_lr: f64, t_0: u64, t_mult: u64, eta_min: f64) -> Result<Self, ScheduleError> {
        if t_0 == 0 {
            return Err(ScheduleError::T0(t_0));
        }
        if t_mult == 0 {
            return Err(ScheduleError::TMult(t_mult));
        }
        let mut s = Self {
            base_lr: finite_non_negative("base_lr", base_lr)?,
            t_0,
            t_mult,
            eta_min: finite_non_negative("eta_min", eta_min)?,
            t_i: t_0 as f64,
            t_cur: -1.0,
            last_epoch: -1,
            lr: base_lr,
        };
        s.step();
        Ok(s)
    }

    /// The current learning rate (PyTorch's `get_last_lr()[0]`).
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Epochs since the last restart (`T_cur`).
    pub fn t_cur(&self) -> f64 {
        self.t_cur
    }

    /// Length of the current cycle (`T_i`).
    pub fn t_i(&self) -> f64 {
        self.t_i
    }

    /// PyTorch's `last_epoch` (the floor of the last epoch stepped to).
    pub fn last_epoch(&self) -> i64 {
        self.last_epoch
    }

    /// `scheduler.step()`: advance one epoch and return the new rate.
    pub fn step(&mut self) -> f64 {
        if self.last_epoch < 0 {
            // PyTorch: `epoch = 0` on the very first call, handled as an explicit epoch.
            self.set_explicit(0.0);
            self.last_epoch = 0;
        } else {
            self.last_epoch += 1;
            self.t_cur += 1.0;
            if self.t_cur >= self.t_i {
                self.t_cur %= self.t_i;
                self.t_i *= self.t_mult as f64;
            }
        }
        self.update_lr()
    }

    /// `scheduler.step(epoch)`: jump to the (possibly fractional) `epoch` and return the new
    /// rate.
    ///
    /// # Errors
    /// [`ScheduleError::Epoch`] when `epoch` is negative or not finite (nothing changes).
    pub fn step_to(&mut self, epoch: f64) -> Result<f64, ScheduleError> {
        if !(epoch.is_finite() && epoch >= 0.0) {
            return Err(ScheduleError::Epoch(epoch));
        }
        self.set_explicit(epoch);
        self.last_epoch = epoch.floor() as i64;
        Ok(self.update_lr())
    }

    /// `T_cur`/`T_i` for an explicit epoch, with PyTorch's expressions (same float operations in
    /// the same order, so the same rounding).
    fn set_explicit(&mut self, epoch: f64) {
        let t_0 = self.t_0 as f64;
        if epoch >= t_0 {
            if self.t_mult == 1 {
                self.t_cur = epoch % t_0;
            } else {
                let m = self.t_mult as f64;
                // Python: `int(math.log(epoch / T_0 * (T_mult - 1) + 1, T_mult))`, where
                // `math.log(x, b)` is `log(x) / log(b)`; `int` truncates towards zero.
                let n = ((epoch / t_0 * (m - 1.0) + 1.0).ln() / m.ln()).trunc();
                let m_pow_n = m.powi(n as i32);
                self.t_cur = epoch - t_0 * (m_pow_n - 1.0) / (m - 1.0);
                self.t_i = t_0 * m_pow_n;
            }
        } else {
            self.t_i = t_0;
            self.t_cur = epoch;
        }
    }

    fn update_lr(&mut self) -> f64 {
        let cos = (std::f64::consts::PI * self.t_cur / self.t_i).cos();
        self.lr = self.eta_min + (self.base_lr - self.eta_min) * (1.0 + cos) / 2.0;
        self.lr
    }
}

/// Which direction of the monitored metric is an improvement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlateauMode {
    /// Lower is better (a loss). PyTorch's default.
    Min,
    /// Higher is better (AUC, accuracy).
    Max,
}

/// How [`ReduceLrOnPlateau::threshold`] is applied to the best value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdMode {
    /// Relative: better means `< best * (1 - threshold)` (min) or `> best * (1 + threshold)`
    /// (max). PyTorch's default.
    Rel,
    /// Absolute: better means `< best - threshold` (min) or `> best + threshold` (max).
    Abs,
}

/// Settings of [`ReduceLrOnPlateau`]; `Default` is PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlateauConfig {
    /// Direction of improvement (default `min`).
    pub mode: PlateauMode,
    /// `new_lr = lr * factor` (default 0.1; must be < 1).
    pub factor: f64,
    /// Epochs without improvement tolerated; the rate is reduced on the first epoch where
    /// the count of bad epochs *exceeds* it (default 10).
    pub patience: u64,
    /// Significance threshold for a new best (default 1e-4).
    pub threshold: f64,
    /// `rel` or `abs` (default `rel`).
    pub threshold_mode: ThresholdMode,
    /// Epochs after a reduction during which bad epochs are not counted (default 0).
    pub cooldown: u64,
    /// Lower bound of the rate (default 0).
    pub min_lr: f64,
    /// Reductions smaller than this are ignored (default 1e-8).
    pub eps: f64,
}

impl Default for PlateauConfig {
    fn default() -> Self {
        Self {
            mode: PlateauMode::Min,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lr: 0.0,
            eps: 1e-8,
        }
    }
}

/// Reduce the rate when a metric stops improving; the exact state machine of
/// `torch.optim.lr_scheduler.ReduceLROnPlateau` for one parameter group.
///
/// Each [`step`](Self::step) with the epoch's metric:
/// 1. if the metric is better than `best` (see [`ThresholdMode`]) it becomes `best` and the bad
///    epoch count resets, otherwise the count grows by one (a NaN metric is never better);
/// 2. during cooldown the cooldown counter decreases and the bad count is forced to 0;
/// 3. when the bad count exceeds `patience`: `lr = max(lr * factor, min_lr)` unless that
///    changes the rate by no more than `eps`; cooldown restarts and the bad count resets
///    (even when the reduction was skipped, as in PyTorch).
///
/// All state is serialisable (`best` is `None` before the first step, where PyTorch holds
/// `inf`/`-inf`, which JSON cannot represent).
#[doc(alias = "ReduceLROnPlateau")]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    /// Settings.
    pub config: PlateauConfig,
    /// The current rate.
    lr: f64,
    /// Best metric so far (`None`: PyTorch's `mode_worse`, i.e. `+inf` for min, `-inf` for max).
    best: Option<f64>,
    /// Consecutive bad epochs.
    num_bad_epochs: u64,
    /// Remaining cooldown epochs.
    cooldown_counter: u64,
    /// Number of steps taken (PyTorch's `last_epoch`).
    last_epoch: u64,
}

impl ReduceLrOnPlateau {
    /// A scheduler for an optimiser whose rate is `initial_lr`.
    ///
    /// # Errors
    /// [`ScheduleError::Factor`] when `factor >= 1` (or NaN), [`ScheduleError::NotFinite`] for
    /// a negative or non-finite `initial_lr`, `threshold`, `min_lr` or `eps`.
    pub fn new(initial_lr: f64, config: PlateauConfig) -> Result<Self, ScheduleError> {
        if !config.factor.is_finite() || config.factor >= 1.0 {
            return Err(ScheduleError::Factor(config.factor));
        }
        finite_non_negative("threshold", config.threshold)?;
        finite_non_negative("min_lr", config.min_lr)?;
        finite_non_negative("eps", config.eps)?;
        Ok(Self {
            config,
            lr: finite_non_negative("initial_lr", initial_lr)?,
            best: None,
            num_bad_epochs: 0,
            cooldown_counter: 0,
            last_epoch: 0,
        })
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Best metric so far (`None` before the first step).
    pub fn best(&self) -> Option<f64> {
        self.best
    }

    /// Consecutive bad epochs (PyTorch's `num_bad_epochs`).
    pub fn num_bad_epochs(&self) -> u64 {
        self.num_bad_epochs
    }

    /// Remaining cooldown epochs (PyTorch's `cooldown_counter`).
    pub fn cooldown_counter(&self) -> u64 {
        self.cooldown_counter
    }

    /// Steps taken (PyTorch's `last_epoch`).
    pub fn last_epoch(&self) -> u64 {
        self.last_epoch
    }

    /// True while bad epochs are being ignored after a reduction.
    pub fn in_cooldown(&self) -> bool {
        self.cooldown_counter > 0
    }

    /// PyTorch's `_is_better(current, best)`; `best == None` is `mode_worse`.
    pub fn is_better(&self, current: f64) -> bool {
        let c = &self.config;
        let best = self.best.unwrap_or(match c.mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        });
        match (c.mode, c.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => current < best * (1.0 - c.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => current < best - c.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => current > best * (c.threshold + 1.0),
            (PlateauMode::Max, ThresholdMode::Abs) => current > best + c.threshold,
        }
    }

    /// `scheduler.step(metric)` after an epoch; returns the (possibly reduced) rate.
    pub fn step(&mut self, metric: f64) -> f64 {
        self.last_epoch += 1;
        if self.is_better(metric) {
            self.best = Some(metric);
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.in_cooldown() {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0;
        }
        if self.num_bad_epochs > self.config.patience {
            let old_lr = self.lr;
            let new_lr = (old_lr * self.config.factor).max(self.config.min_lr);
            if old_lr - new_lr > self.config.eps {
                tracing::info!(old_lr, new_lr, "ReduceLROnPlateau: reducing learning rate");
                self.lr = new_lr;
            }
            self.cooldown_counter = self.config.cooldown;
            self.num_bad_epochs = 0;
        }
        self.lr
    }
}

/// The global L2 norm of all gradients, as `torch.nn.utils.clip_grad_norm_` computes it
/// (`norm_type=2`): the L2 norm of the per-tensor L2 norms, i.e. `sqrt(sum_i sum_j g_ij^2)`
/// over every element of every slice. Accumulated in `f64`. Empty input gives 0.
pub fn global_grad_norm<T: Copy + Into<f64>>(grads: &[&[T]]) -> f64 {
    grads
        .iter()
        .map(|g| {
            let n = g
                .iter()
                .map(|&x| {
                    let x: f64 = x.into();
                    x * x
                })
                .sum::<f64>()
                .sqrt();
            n * n
        })
        .sum::<f64>()
        .sqrt()
}

/// The factor `clip_grad_norm_` multiplies every gradient by:
/// `min(1, max_norm / (total_norm + 1e-6))`. It is below 1 only when `total_norm` exceeds
/// `max_norm` (by more than the 1e-6 guard); 1 leaves gradients unchanged. NaN when
/// `total_norm` is NaN (PyTorch then turns every gradient into NaN; [`clip_grad_norm`]
/// refuses instead).
pub fn clip_coef(total_norm: f64, max_norm: f64) -> f64 {
    let coef = max_norm / (total_norm + 1e-6);
    if coef.is_nan() { coef } else { coef.min(1.0) }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` on host slices (one slice per
/// parameter's gradient): computes [`global_grad_norm`] over **all** slices together and
/// scales every element by [`clip_coef`] when that is below 1. Returns the total norm before
/// clipping, as PyTorch does. `f32` gradients are scaled as `(g as f64 * coef) as f32`.
///
/// # Errors
/// [`ScheduleError::NonFiniteNorm`] when the total norm is NaN or infinite (PyTorch's
/// `error_if_nonfinite=True`); the gradients are left untouched. [`ScheduleError::NotFinite`]
/// when `max_norm` is negative or not finite.
pub fn clip_grad_norm<T: GradElement>(
    grads: &mut [&mut [T]],
    max_norm: f64,
) -> Result<f64, ScheduleError> {
    finite_non_negative("max_norm", max_norm)?;
    let total = {
        let views: Vec<&[T]> = grads.iter().map(|g| &**g).collect();
        global_grad_norm(&views)
    };
    if !total.is_finite() {
        return Err(ScheduleError::NonFiniteNorm(total));
    }
    let coef = clip_coef(total, max_norm);
    if coef < 1.0 {
        for g in grads.iter_mut() {
            for x in g.iter_mut() {
                *x = x.scaled(coef);
            }
        }
    }
    Ok(total)
}

/// A gradient element type [`clip_grad_norm`] can scale (`f32`, `f64`).
pub trait GradElement: Copy + Into<f64> {
    /// `self * coef`, rounded back to `Self`.
    fn scaled(self, coef: f64) -> Self;
}

impl GradElement for f32 {
    fn scaled(self, coef: f64) -> Self {
        (f64::from(self) * coef) as f32
    }
}

impl GradElement for f64 {
    fn scaled(self, coef: f64) -> Self {
        self * coef
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = WarmupCosine {
            base_lr: 1.0,
            min_lr: 0.0,
            warmup_steps: 4,
            total_steps: 14,
        };
        let lrs: Vec<f64> = (0..14).map(|i| s.lr(i)).collect();
        assert_eq!(&lrs[..4], &[0.25, 0.5, 0.75, 1.0]);
        assert!((lrs[4] - 1.0).abs() < 1e-12);
        // Half way through the cosine part: (1 + cos(pi/2)) / 2 = 0.5.
        assert!((s.lr(9) - 0.5).abs() < 1e-12);
        assert!(s.lr(14) < 1e-12 && s.lr(100) < 1e-12);
        for w in lrs[4..].windows(2) {
            assert!(w[1] <= w[0]);
        }
        let no_warm = WarmupCosine {
            base_lr: 2.0,
            min_lr: 0.5,
            warmup_steps: 0,
            total_steps: 10,
        };
        assert_eq!(no_warm.lr(0), 2.0);
        assert!((no_warm.lr(10) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn early_stopping_patience_and_min_delta() {
        let mut es = EarlyStopping::new(true, 2, 0.01);
        assert!(es.update(1, 0.80));
        assert!(!es.update(2, 0.805)); // below min_delta
        assert!(!es.should_stop());
        assert!(es.update(3, 0.82));
        assert!(!es.update(4, 0.81));
        assert!(!es.update(5, 0.82));
        assert!(es.should_stop());
        assert_eq!((es.best, es.best_epoch), (Some(0.82), 3));

        let mut lo = EarlyStopping::new(false, 1, 0.0);
        assert!(lo.update(1, 1.0));
        assert!(lo.update(2, 0.5));
        assert!(!lo.update(3, 0.5));
        assert!(lo.should_stop());
        let mut never = EarlyStopping::new(true, 0, 0.0);
        never.update(1, 1.0);
        for e in 2..50 {
            never.update(e, 0.0);
        }
        assert!(!never.should_stop());
    }
}
