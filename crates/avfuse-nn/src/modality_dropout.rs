//! Modality dropout (design 2.2): [`ModalityDropout`] in `batch` or `sample` mode, with
//! per-modality weights, a ramp and an optional rescale; [`drop_sample`] is its simplest
//! case (sample mode, one modality, uniform).
//!
//! A sample never loses its last present modality. Masks are a pure function of
//! `(seed, epoch, sample_id)`, so they do not depend on batch composition, thread
//! interleaving or how often the function was called: a resumed run draws the same masks.
//! They are built on the host (Burn's RNG is process-global, see the design notes) and enter
//! the network as the `[B, M]` presence mask.

use crate::hash::splitmix64 as mix;

/// A uniform number in [0, 1) from a 64-bit hash (53 significant bits).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Blank modalities of one sample in place.
///
/// `presence` holds the sample's data presence (1 present, 0 missing), one entry per
/// modality, and is updated to the training presence. Returns the index of the modality
/// blanked, if any. `p` outside [0, 1] is clamped by the caller's config validation.
pub fn drop_sample(
    presence: &mut [u8],
    p: f64,
    seed: u64,
    epoch: u64,
    sample_id: u64,
) -> Option<usize> {
    let present: Vec<usize> = (0..presence.len()).filter(|&m| presence[m] != 0).collect();
    if present.len() < 2 || p <= 0.0 {
        return None;
    }
    let h = mix(mix(mix(seed) ^ epoch) ^ sample_id);
    if unit(h) >= p {
        return None;
    }
    let pick = present[(mix(h) % present.len() as u64) as usize];
    presence[pick] = 0;
    Some(pick)
}

/// Granularity of [`ModalityDropout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropMode {
    /// AV-HuBERT's original: with probability `p` one modality is chosen and blanked for the
    /// whole batch (samples for which it is the last present modality keep it).
    Batch,
    /// Each sample independently: with probability `p` it loses between one and
    /// `max_dropped` of its present modalities (never the last one).
    Sample,
}

/// Errors of [`ModalityDropout::new`]: the messages name the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModalityDropoutError {
    /// `p` outside `[0, 1]`.
    #[error("modality dropout probability has to be between 0 and 1, but got {0}")]
    Probability(f64),
    /// Wrong number of weights, or a negative / non-finite / all-zero weight vector.
    #[error("modality dropout weights {0:?}: need one finite weight >= 0 per modality, not all 0")]
    Weights(Vec<f64>),
    /// `max_dropped` of 0.
    #[error("modality dropout max_dropped must be >= 1")]
    MaxDropped,
}

/// The modality dropout policy of design 2.2, general over `M` modalities.
///
/// Masks are a pure function of `(seed, epoch, step)` in batch mode and of
/// `(seed, epoch, sample id)` in sample mode: they do not depend on batch composition,
/// thread interleaving or how often the policy was called, so a resumed run draws the same
/// masks. It works on host presence vectors (one `u8` 0/1 per modality per sample) that then
/// enter the network as the `[B, M]` presence mask; data-missing modalities (presence 0 on
/// input) are never "dropped" again and never counted.
#[derive(Clone, Debug, PartialEq)]
pub struct ModalityDropout {
    p: f64,
    mode: DropMode,
    weights: Option<Vec<f64>>,
    max_dropped: usize,
    ramp_epochs: usize,
    rescale: bool,
}

impl ModalityDropout {
    /// `p`: target probability that a batch (`Batch`) or a sample (`Sample`) is hit.
    /// `weights`: relative chance of each modality to be the one dropped (`None`: uniform).
    /// `ramp_epochs`: `p` grows linearly from 0 at epoch 1 to its target at epoch
    /// `ramp_epochs + 1` (0: no ramp). `rescale`: multiply kept modalities by
    /// `1 / (1 - p/M)` (off by default, like AV-HuBERT).
    pub fn new(
        p: f64,
        mode: DropMode,
        weights: Option<Vec<f64>>,
        ramp_epochs: usize,
        rescale: bool,
    ) -> Result<Self, ModalityDropoutError> {
        if !(0.0..=1.0).contains(&p) {
            return Err(ModalityDropoutError::Probability(p));
        }
        if let Some(w) = &weights
            && (w.iter().any(|x| !x.is_finite() || *x < 0.0) || w.iter().all(|x| *x == 0.0))
        {
            return Err(ModalityDropoutError::Weights(w.clone()));
        }
        Ok(Self {
            p,
            mode,
            weights,
            max_dropped: 1,
            ramp_epochs,
            rescale,
        })
    }

    /// Sample mode: drop up to `k` modalities of a hit sample (uniform in `1..=min(k, present-1)`).
    pub fn with_max_dropped(mut self, k: usize) -> Result<Self, ModalityDropoutError> {
        if k == 0 {
            return Err(ModalityDropoutError::MaxDropped);
        }
        self.max_dropped = k;
        Ok(self)
    }

    /// The probability in effect at `epoch` (1-based), after the ramp.
    pub fn p_at(&self, epoch: u64) -> f64 {
        if self.ramp_epochs == 0 {
            return self.p;
        }
        self.p * (epoch.saturating_sub(1) as f64 / self.ramp_epochs as f64).min(1.0)
    }

    /// Scale for the features of kept modalities at `epoch` with `m` modalities:
    /// `1 / (1 - p/M)` when rescaling, else 1.
    pub fn rescale_factor(&self, epoch: u64, m: usize) -> f64 {
        if !self.rescale || m < 2 {
            return 1.0;
        }
        1.0 / (1.0 - self.p_at(epoch) / m as f64)
    }

    /// Pick among `candidates` (modality indices) from the hash `h`: uniformly
    /// (`candidates[h % len]`, the same draw as [`drop_sample`]) or by weight.
    fn pick(&self, candidates: &[usize], h: u64) -> Option<usize> {
        let Some(weights) = &self.weights else {
            return (!candidates.is_empty())
                .then(|| candidates[(h % candidates.len() as u64) as usize]);
        };
        let w = |m: usize| weights.get(m).copied().unwrap_or(0.0);
        let total: f64 = candidates.iter().map(|&m| w(m)).sum();
        if total <= 0.0 {
            return None;
        }
        let target = unit(h) * total;
        let mut acc = 0.0;
        for &m in candidates {
            acc += w(m);
            if target < acc {
                return Some(m);
            }
        }
        candidates.iter().rev().copied().find(|&m| w(m) > 0.0)
    }

    /// Apply to one batch during training. `presence[b]` is sample `b`'s presence (length
    /// `M`), updated in place; `sample_ids[b]` its stable id; `step` the global step (batch
    /// mode). Returns how many samples lost each modality. With fewer than two modalities,
    /// or `p = 0` at this epoch, nothing changes.
    ///
    /// # Panics
    /// If `presence` and `sample_ids` differ in length, or the presence vectors differ in
    /// length (caller invariants: the trainer builds both from one batch).
    pub fn apply(
        &self,
        presence: &mut [Vec<u8>],
        sample_ids: &[u64],
        seed: u64,
        epoch: u64,
        step: u64,
    ) -> Vec<usize> {
        assert_eq!(presence.len(), sample_ids.len(), "one id per sample");
        let m = presence.first().map_or(0, |p| p.len());
        assert!(
            presence.iter().all(|p| p.len() == m),
            "presence vectors of one length"
        );
        if let Some(w) = &self.weights {
            assert_eq!(w.len(), m, "one modality dropout weight per modality");
        }
        let mut counts = vec![0usize; m];
        let p = self.p_at(epoch);
        if m < 2 || p <= 0.0 {
            return counts;
        }
        match self.mode {
            DropMode::Batch => {
                let h = mix(mix(mix(seed ^ 0xBA7C) ^ epoch) ^ step);
                if unit(h) >= p {
                    return counts;
                }
                let all: Vec<usize> = (0..m).collect();
                let Some(k) = self.pick(&all, mix(h)) else {
                    return counts;
                };
                for pres in presence.iter_mut() {
                    let present = pres.iter().filter(|&&v| v != 0).count();
                    if pres[k] != 0 && present >= 2 {
                        pres[k] = 0;
                        counts[k] += 1;
                    }
                }
            }
            DropMode::Sample => {
                for (pres, &id) in presence.iter_mut().zip(sample_ids) {
                    let mut h = mix(mix(mix(seed) ^ epoch) ^ id);
                    if unit(h) >= p {
                        continue;
                    }
                    let mut present: Vec<usize> = (0..m).filter(|&k| pres[k] != 0).collect();
                    if present.len() < 2 {
                        continue;
                    }
                    let most = self.max_dropped.min(present.len() - 1);
                    // With one modality to drop this is exactly `drop_sample`'s draw.
                    let n_drop = if most > 1 {
                        1 + (mix(h ^ 0x5A5A) % most as u64) as usize
                    } else {
                        1
                    };
                    for _ in 0..n_drop {
                        h = mix(h);
                        let Some(k) = self.pick(&present, h) else {
                            break;
                        };
                        pres[k] = 0;
                        counts[k] += 1;
                        present.retain(|&x| x != k);
                    }
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_blanks_every_modality_and_rate_matches() {
        for m in [2usize, 3, 4] {
            let n = 100_000u64;
            let mut dropped = vec![0u64; m];
            for id in 0..n {
                let mut pres = vec![1u8; m];
                if let Some(k) = drop_sample(&mut pres, 0.3, 11, 2, id) {
                    dropped[k] += 1;
                }
                assert!(pres.contains(&1));
            }
            let total: u64 = dropped.iter().sum();
            // Binomial(1e5, 0.3): std ~ 145; allow 5 sigma.
            assert!(
                (total as f64 - 30_000.0).abs() < 725.0,
                "m={m} total={total}"
            );
            for &d in &dropped {
                let expect = 30_000.0 / m as f64;
                assert!(
                    (d as f64 - expect).abs() < 6.0 * expect.sqrt() + 50.0,
                    "m={m} {dropped:?}"
                );
            }
        }
    }

    #[test]
    fn deterministic_and_respects_missing_data() {
        let mut a = [1u8, 1];
        let mut b = [1u8, 1];
        assert_eq!(
            drop_sample(&mut a, 0.5, 1, 3, 77),
            drop_sample(&mut b, 0.5, 1, 3, 77)
        );
        assert_eq!(a, b);
        let mut only_video = [1u8, 0];
        for id in 0..1000 {
            assert_eq!(drop_sample(&mut only_video, 1.0, 1, 0, id), None);
        }
        let mut both = [1u8, 1];
        assert!(drop_sample(&mut both, 1.0, 1, 0, 5).is_some());
        let mut both = [1u8, 1];
        assert_eq!(drop_sample(&mut both, 0.0, 1, 0, 5), None);
    }

    fn policy(p: f64, mode: DropMode) -> ModalityDropout {
        ModalityDropout::new(p, mode, None, 0, false).unwrap()
    }

    /// Never all blanked, over 10^5 masks for M = 2, 3, 4, both modes, up to M-1 dropped;
    /// the rate of hit samples matches p (5 binomial sigmas).
    #[test]
    fn policy_never_blanks_everything_and_matches_p() {
        for m in [2usize, 3, 4] {
            for mode in [DropMode::Sample, DropMode::Batch] {
                let pol = policy(0.4, mode).with_max_dropped(m - 1).unwrap();
                let (n_batches, bsz) = (12_500u64, 8usize);
                let mut hit = 0u64;
                for step in 0..n_batches {
                    let ids: Vec<u64> = (0..bsz as u64).map(|j| step * bsz as u64 + j).collect();
                    let mut pres = vec![vec![1u8; m]; bsz];
                    pol.apply(&mut pres, &ids, 9, 1, step);
                    for p in &pres {
                        assert!(p.contains(&1), "m {m} {mode:?}: all blanked");
                        hit += p.contains(&0) as u64;
                    }
                }
                let n = (n_batches * bsz as u64) as f64;
                // Batch mode: the unit of the Bernoulli is the batch.
                let (trials, rate) = match mode {
                    DropMode::Sample => (n, hit as f64 / n),
                    DropMode::Batch => (n_batches as f64, hit as f64 / n),
                };
                let sd = (0.4 * 0.6 / trials).sqrt();
                assert!((rate - 0.4).abs() < 5.0 * sd, "m {m} {mode:?}: rate {rate}");
            }
        }
    }

    /// Sample mode with one modality and uniform choice draws exactly what `drop_sample` does.
    #[test]
    fn sample_mode_generalises_drop_sample() {
        let pol = policy(0.37, DropMode::Sample);
        for id in 0..5000u64 {
            let mut a = vec![vec![1u8, 1, 1]];
            let mut b = [1u8, 1, 1];
            let counts = pol.apply(&mut a, &[id], 4, 3, 0);
            let k = drop_sample(&mut b, 0.37, 4, 3, id);
            assert_eq!(a[0], b.to_vec(), "id {id}");
            assert_eq!(counts.iter().position(|&c| c > 0), k);
        }
    }

    #[test]
    fn weights_steer_which_modality_is_dropped() {
        let pol =
            ModalityDropout::new(1.0, DropMode::Sample, Some(vec![3.0, 1.0]), 0, false).unwrap();
        let mut counts = [0usize; 2];
        for id in 0..40_000u64 {
            let mut pres = vec![vec![1u8, 1]];
            let c = pol.apply(&mut pres, &[id], 5, 1, 0);
            counts[0] += c[0];
            counts[1] += c[1];
        }
        let frac = counts[0] as f64 / 40_000.0;
        assert!(
            (frac - 0.75).abs() < 5.0 * (0.75f64 * 0.25 / 40_000.0).sqrt(),
            "{frac}"
        );
        // A zero weight never drops that modality.
        let pol =
            ModalityDropout::new(1.0, DropMode::Batch, Some(vec![0.0, 1.0]), 0, false).unwrap();
        for step in 0..1000 {
            let mut pres = vec![vec![1u8, 1]; 4];
            pol.apply(&mut pres, &[0, 1, 2, 3], 5, 1, step);
            assert!(pres.iter().all(|p| p == &vec![1, 0]));
        }
    }

    #[test]
    fn batch_mode_blanks_one_modality_for_the_whole_batch() {
        let pol = policy(1.0, DropMode::Batch);
        let mut pres = vec![vec![1u8, 1, 1], vec![1, 1, 1], vec![0, 1, 1], vec![0, 0, 1]];
        let counts = pol.apply(&mut pres, &[0, 1, 2, 3], 1, 1, 42);
        let k = counts
            .iter()
            .position(|&c| c > 0)
            .expect("one modality dropped");
        assert_eq!(counts.iter().filter(|&&c| c > 0).count(), 1);
        for p in &pres {
            assert!(p.contains(&1));
        }
        // Samples whose last present modality is k keep it.
        if k == 2 {
            assert_eq!(pres[3], vec![0, 0, 1]);
        }
    }

    #[test]
    fn ramp_rescale_eval_and_errors() {
        let pol = ModalityDropout::new(0.6, DropMode::Sample, None, 3, true).unwrap();
        assert_eq!(pol.p_at(1), 0.0);
        assert!((pol.p_at(2) - 0.2).abs() < 1e-12);
        assert!((pol.p_at(4) - 0.6).abs() < 1e-12);
        assert!((pol.p_at(10) - 0.6).abs() < 1e-12);
        assert!((pol.rescale_factor(4, 2) - 1.0 / 0.7).abs() < 1e-12);
        assert_eq!(policy(0.6, DropMode::Sample).rescale_factor(4, 2), 1.0);
        // Epoch 1 of a ramp drops nothing; a single modality never drops.
        let mut pres = vec![vec![1u8, 1]; 3];
        assert_eq!(pol.apply(&mut pres, &[1, 2, 3], 0, 1, 0), vec![0, 0]);
        let mut single = vec![vec![1u8]; 3];
        assert_eq!(
            policy(1.0, DropMode::Sample).apply(&mut single, &[1, 2, 3], 0, 1, 0),
            vec![0]
        );
        // Same inputs, same masks.
        let mut a = vec![vec![1u8, 1, 1]; 64];
        let mut b = a.clone();
        let ids: Vec<u64> = (0..64).collect();
        let p = policy(0.5, DropMode::Sample).with_max_dropped(2).unwrap();
        assert_eq!(
            p.apply(&mut a, &ids, 3, 2, 7),
            p.apply(&mut b, &ids, 3, 2, 7)
        );
        assert_eq!(a, b);
        assert_eq!(
            ModalityDropout::new(1.5, DropMode::Sample, None, 0, false)
                .unwrap_err()
                .to_string(),
            "modality dropout probability has to be between 0 and 1, but got 1.5"
        );
        assert!(
            ModalityDropout::new(0.5, DropMode::Batch, Some(vec![0.0, 0.0]), 0, false).is_err()
        );
        assert!(
            ModalityDropout::new(0.5, DropMode::Batch, Some(vec![-1.0, 1.0]), 0, false).is_err()
        );
        assert!(policy(0.5, DropMode::Sample).with_max_dropped(0).is_err());
    }
}
