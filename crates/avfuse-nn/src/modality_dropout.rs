//! Per-sample modality dropout masks (first version: `sample` mode).
//!
//! With probability `p` a training sample loses one of its present modalities, chosen
//! uniformly; a sample never loses its last present modality. Masks are a pure function of
//! `(seed, epoch, sample_id)`, so they do not depend on batch composition, thread
//! interleaving or how often the function was called: a resumed run draws the same masks.
//! They are built on the host (Burn's RNG is process-global, see the design notes) and enter
//! the network as the `[B, M]` presence mask.

/// splitmix64 finaliser: a bijective 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

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
}
