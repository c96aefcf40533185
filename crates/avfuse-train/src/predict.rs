//! Batched inference and the classification losses (binary and multi-class cross-entropy).

use avfuse_metrics::multiclass::{MulticlassReport, argmax_rows, multiclass_report};
use avfuse_models::AvModel;
use burn::tensor::Device;

use crate::corrupt::Corruption;
use crate::data::{Dataset, Normalizer};
use crate::error::{Result, TrainError};

/// Numerically stable binary cross-entropy on a logit `x` with target `y` in {0, 1}:
/// `max(x, 0) - x y + ln(1 + e^{-|x|})` (PyTorch's `BCEWithLogitsLoss`).
pub fn bce_with_logits(x: f64, y: f64) -> f64 {
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

/// The logistic function, stable for large |x|.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Softmax of `logits` in f64 (stable: the maximum is subtracted first).
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Model outputs over a whole split.
#[derive(Clone, Debug)]
pub struct Predictions {
    /// Fake probability per clip, in dataset order: the sigmoid of a binary head, or
    /// `1 - P(class 0)` (class 0 is the real class) for a multi-class head.
    pub probs: Vec<f64>,
    /// Classes of a multi-class head (`K`); 0 for a binary head.
    pub num_classes: usize,
    /// Multi-class heads: softmax probabilities `[N, K]`, row-major; empty for a binary head.
    pub class_probs: Vec<f64>,
    /// Mean cross-entropy over the split (binary or multi-class, against
    /// [`Dataset::targets`]).
    pub loss: f64,
}

impl Predictions {
    /// Multi-class heads: accuracy, per-class and macro precision/recall/F1 and the confusion
    /// matrix of the arg-max class against `targets` ([`Dataset::targets`]); `None` for a
    /// binary head.
    pub fn multiclass(&self, targets: &[u8]) -> Result<Option<MulticlassReport>> {
        let Some(preds) = self.multiclass_predictions()? else {
            return Ok(None);
        };
        Ok(Some(class_report(targets, &preds, self.num_classes)?))
    }

    /// Multi-class heads: the arg-max class of each clip (the first on ties); `None` for a
    /// binary head.
    pub fn multiclass_predictions(&self) -> Result<Option<Vec<usize>>> {
        if self.num_classes < 2 {
            return Ok(None);
        }
        Ok(Some(argmax_rows(&self.class_probs, self.num_classes)?))
    }
}

/// Multi-class metrics of the arg-max classes `preds` against `targets`
/// ([`Dataset::targets`]), over `num_classes` classes.
pub fn class_report(
    targets: &[u8],
    preds: &[usize],
    num_classes: usize,
) -> Result<MulticlassReport> {
    let labels: Vec<usize> = targets.iter().map(|&t| usize::from(t)).collect();
    Ok(multiclass_report(&labels, preds, num_classes)?)
}

/// Run `model` (in eval mode, on a device without autodiff) over every clip of `ds`, with
/// `presence[i]` for clip `i`, in batches of `batch_size`.
pub fn predict(
    model: &AvModel,
    ds: &Dataset,
    presence: &[[u8; 2]],
    norm: &Normalizer,
    batch_size: usize,
    device: &Device,
) -> Result<Predictions> {
    predict_corrupted(model, ds, presence, norm, batch_size, device, None)
}

/// [`predict`] with an optional test-time corruption applied to each host batch before
/// upload (`(corruption, seed)`; see [`crate::corrupt`]).
pub fn predict_corrupted(
    model: &AvModel,
    ds: &Dataset,
    presence: &[[u8; 2]],
    norm: &Normalizer,
    batch_size: usize,
    device: &Device,
    corruption: Option<(&Corruption, u64)>,
) -> Result<Predictions> {
    let n = ds.len();
    let mut probs = Vec::with_capacity(n);
    let mut class_probs = Vec::new();
    let mut num_classes = 0;
    let mut loss = 0.0;
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(batch_size.max(1)) {
        let pres: Vec<[u8; 2]> = chunk.iter().map(|&i| presence[i]).collect();
        let mut host = ds.host_batch(chunk, &pres, norm);
        if let Some((c, seed)) = corruption {
            c.apply(&mut host, chunk, norm, seed)?;
        }
        let input = host.upload(device).0;
        let logits = model
            .forward(input)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| {
                TrainError::Device(format!(
                    "cannot read model output back from the device: {e:?}"
                ))
            })?;
        let k = logits.len() / chunk.len().max(1);
        if k == 1 {
            for (&i, &x) in chunk.iter().zip(&logits) {
                let x = f64::from(x);
                loss += bce_with_logits(x, f64::from(ds.targets[i]));
                probs.push(sigmoid(x));
            }
        } else {
            num_classes = k;
            for (&i, row) in chunk.iter().zip(logits.chunks(k)) {
                let row: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
                let p = softmax(&row);
                // -log softmax(x)_y, computed from the logits for stability.
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + row.iter().map(|&x| (x - max).exp()).sum::<f64>().ln();
                loss += lse - row[usize::from(ds.targets[i]).min(k - 1)];
                probs.push(1.0 - p[0]);
                class_probs.extend(p);
            }
        }
    }
    Ok(Predictions {
        probs,
        num_classes,
        class_probs,
        loss: loss / n.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bce_matches_the_textbook_formula() {
        for &(x, y) in &[(0.3, 1.0), (-2.0, 0.0), (4.0, 0.0), (-1.5, 1.0)] {
            let p = 1.0 / (1.0 + f64::exp(-x));
            let naive = -(y * p.ln() + (1.0 - y) * (1.0 - p).ln());
            assert!((bce_with_logits(x, y) - naive).abs() < 1e-12);
        }
        // Stable where the naive formula overflows.
        assert!((bce_with_logits(1000.0, 0.0) - 1000.0).abs() < 1e-9);
        assert!(bce_with_logits(-1000.0, 0.0) < 1e-12);
        assert_eq!(sigmoid(0.0), 0.5);
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(800.0) <= 1.0);
    }

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p = softmax(&[1000.0, 1000.0, 998.0]);
        let e2 = (-2f64).exp();
        assert!((p[0] - 1.0 / (2.0 + e2)).abs() < 1e-12);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let pred = Predictions {
            probs: vec![0.9, 0.2],
            num_classes: 3,
            class_probs: vec![0.1, 0.3, 0.6, 0.8, 0.1, 0.1],
            loss: 0.0,
        };
        let r = pred.multiclass(&[2, 1]).unwrap().unwrap();
        assert_eq!(
            r.confusion,
            vec![vec![0, 0, 0], vec![1, 0, 0], vec![0, 0, 1]]
        );
        assert_eq!(r.accuracy, 0.5);
        let binary = Predictions {
            num_classes: 0,
            class_probs: Vec::new(),
            ..pred
        };
        assert_eq!(binary.multiclass(&[0, 1]).unwrap(), None);
    }
}
