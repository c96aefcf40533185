//! Batched inference and the binary cross-entropy loss.

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

/// Model outputs over a whole split.
#[derive(Clone, Debug)]
pub struct Predictions {
    /// Fake probability per clip, in dataset order.
    pub probs: Vec<f64>,
    /// Mean binary cross-entropy over the split.
    pub loss: f64,
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
        for (&i, &x) in chunk.iter().zip(&logits) {
            let x = f64::from(x);
            loss += bce_with_logits(x, f64::from(ds.data.labels[i]));
            probs.push(sigmoid(x));
        }
    }
    Ok(Predictions {
        probs,
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
}
