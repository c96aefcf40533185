//! Learning-rate schedule and early stopping.

use serde::{Deserialize, Serialize};

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
