//! Presence masks: which modality is present for which sample.
//!
//! A presence mask is a `[B, M]` float tensor of zeros and ones (`B` samples, `M`
//! modalities). A modality that is absent because the data is missing (a clip without an
//! audio track) and one that was blanked on purpose (modality dropout, a robustness
//! evaluation) are the same thing downstream: presence 0.

use burn::tensor::{Device, Tensor, TensorData};

/// Errors raised when building or applying a presence mask.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PresenceError {
    /// The per-modality presence vectors do not all have `batch` entries.
    #[error(
        "presence for modality {modality} has {got} entries, expected one per sample ({batch})"
    )]
    BatchMismatch {
        /// Index of the offending modality.
        modality: usize,
        /// Number of entries it has.
        got: usize,
        /// Batch size expected.
        batch: usize,
    },
    /// A presence value other than 0 or 1.
    #[error("presence for modality {modality}, sample {sample} is {value}: must be 0 or 1")]
    NotBinary {
        /// Index of the offending modality.
        modality: usize,
        /// Index of the offending sample.
        sample: usize,
        /// The value found.
        value: u8,
    },
    /// No modality given.
    #[error("a presence mask needs at least one modality")]
    NoModality,
}

/// Build a `[B, M]` presence tensor from one `B`-long 0/1 vector per modality.
///
/// Column `m` of the result is `per_modality[m]`. Values must be 0 or 1 and all vectors the
/// same length.
pub fn presence_tensor(
    per_modality: &[&[u8]],
    device: &Device,
) -> Result<Tensor<2>, PresenceError> {
    let first = per_modality.first().ok_or(PresenceError::NoModality)?;
    let batch = first.len();
    let m = per_modality.len();
    let mut values = vec![0f32; batch * m];
    for (modality, column) in per_modality.iter().enumerate() {
        if column.len() != batch {
            return Err(PresenceError::BatchMismatch {
                modality,
                got: column.len(),
                batch,
            });
        }
        for (sample, &v) in column.iter().enumerate() {
            if v > 1 {
                return Err(PresenceError::NotBinary {
                    modality,
                    sample,
                    value: v,
                });
            }
            values[sample * m + modality] = f32::from(v);
        }
    }
    Ok(Tensor::from_data(
        TensorData::new(values, [batch, m]),
        device,
    ))
}

/// Multiply a batch-major tensor `x` (`[B, ...]`) by a per-sample presence `[B]`.
///
/// Samples with presence 0 come out exactly zero (also their gradients); samples with
/// presence 1 are unchanged. Works for any rank `D >= 1`; the mask is broadcast over every
/// dimension after the first.
///
/// # Panics
/// If `presence` does not have `B` entries (a programming error, not a data error: shapes
/// are fixed by the batcher).
pub fn mask_batch<const D: usize>(x: Tensor<D>, presence: Tensor<1>) -> Tensor<D> {
    let batch = x.dims()[0];
    assert_eq!(
        presence.dims()[0],
        batch,
        "presence must have one entry per sample"
    );
    let mut shape = [1usize; D];
    shape[0] = batch;
    x * presence.reshape(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    #[test]
    fn presence_tensor_is_sample_major() {
        let d = device();
        let p = presence_tensor(&[&[1, 0, 1], &[0, 1, 1]], &d).unwrap();
        assert_eq!(p.dims(), [3, 2]);
        let v = p.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn presence_tensor_rejects_bad_input() {
        let d = device();
        assert_eq!(
            presence_tensor(&[&[1, 0], &[1]], &d).unwrap_err(),
            PresenceError::BatchMismatch {
                modality: 1,
                got: 1,
                batch: 2
            }
        );
        assert_eq!(
            presence_tensor(&[&[1, 2]], &d).unwrap_err(),
            PresenceError::NotBinary {
                modality: 0,
                sample: 1,
                value: 2
            }
        );
        assert_eq!(
            presence_tensor(&[], &d).unwrap_err(),
            PresenceError::NoModality
        );
    }

    #[test]
    fn mask_batch_zeroes_absent_samples_and_keeps_present_ones() {
        let d = device();
        let x = Tensor::<3>::from_data(
            TensorData::new((1..=12).map(|v| v as f32).collect::<Vec<_>>(), [3, 2, 2]),
            &d,
        );
        let p = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0], [3]), &d);
        let y = mask_batch(x, p).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(
            y,
            vec![
                1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 9.0, 10.0, 11.0, 12.0
            ]
        );
    }

    #[test]
    fn mask_batch_blocks_gradient_of_absent_samples() {
        let d = device().autodiff();
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]), &d)
            .require_grad();
        let p = Tensor::<1>::from_data(TensorData::new(vec![0.0f32, 1.0], [2]), &d);
        let loss = (mask_batch(x.clone(), p) * 3.0).sum();
        let grads = loss.backward();
        let g = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(g, vec![0.0, 0.0, 3.0, 3.0]);
    }
}
