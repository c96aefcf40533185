//! The dropout family with PyTorch's semantics (design section 2.1).
//!
//! | layer | input | mask | formula (training) |
//! |---|---|---|---|
//! | [`Dropout`] | any rank | per element | `x * m / (1-p)` |
//! | [`Dropout1d`] | `[N, C, L]` or `[C, L]` | per channel | `x * m[n,c] / (1-p)` |
//! | [`Dropout2d`] | `[N, C, H, W]` | per channel | same |
//! | [`Dropout3d`] | `[N, C, D, H, W]` or `[C, D, H, W]` | per channel | same |
//! | [`AlphaDropout`] | any rank | per element | `a * (x m + alpha' (1-m)) + b` |
//! | [`FeatureAlphaDropout`] | rank >= 2, `[N, C, ...]` | per channel | same |
//! | [`DropPath`] | `[B, ...]` | per sample | `x * m[b] / (1-p)` (or `x * m[b]`) |
//! | [`LockedDropout`] | `[T, B, H]` or `[B, T, H]` | `[B, H]`, shared over time | `x * m[b,h] / (1-p)` |
//!
//! with `m ~ Bernoulli(1-p)`, `alpha' = -1.7580993408473766`,
//! `a = ((1-p)(1 + p alpha'^2))^(-1/2)`, `b = -a alpha' p`.
//!
//! Common rules (PyTorch's): `p` outside `[0, 1]` is a construction error worded as PyTorch's
//! ("dropout probability has to be between 0 and 1, but got {p}"); `p = 0` or evaluation
//! returns the input unchanged; `p = 1` returns zeros (exact zeros, also where the input is
//! NaN or infinite, where PyTorch's `x * 0` would give NaN); an empty tensor passes through.
//!
//! Every variant runs one fused kernel ([`kernel`]): the mask is a counter-based hash of a
//! seed, never stored, and the backward regenerates it. Each call draws its seed from a
//! process-wide stream ([`manual_seed`], [`next_seed`]), so a seeded program gets the same
//! masks run to run; the `*_with_seed` functions take an explicit seed.

#[cfg(feature = "cube")]
mod cube;
pub mod ext;
mod functional;
pub mod kernel;
mod modules;

pub use functional::*;
pub use modules::*;

use std::sync::atomic::{AtomicU64, Ordering};

/// Errors of the dropout family: all are configuration or shape errors of the caller.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DropoutError {
    /// `p` outside `[0, 1]` (or NaN); PyTorch's wording.
    #[error("dropout probability has to be between 0 and 1, but got {p}")]
    Probability {
        /// The rejected probability.
        p: f64,
    },
    /// The input rank does not fit the layer.
    #[error("{layer}: expected {expected}, but received a {got}-D input")]
    Rank {
        /// Layer name, e.g. `Dropout1d`.
        layer: &'static str,
        /// What the layer accepts, e.g. `2-D or 3-D input`.
        expected: &'static str,
        /// The input's rank.
        got: usize,
    },
}

/// Check a dropout probability, as PyTorch does at construction.
pub fn check_probability(p: f64) -> Result<f64, DropoutError> {
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(DropoutError::Probability { p })
    }
}

/// Base of the process-wide seed stream (set by [`manual_seed`]).
static SEED_BASE: AtomicU64 = AtomicU64::new(0x0005_EED0_FA7F_5E00);
/// Calls drawn from the stream since the last [`manual_seed`].
static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Restart the process-wide dropout seed stream at `seed` (like `torch.manual_seed` for the
/// dropout family). A single-threaded program that calls this first draws the same masks
/// on every run.
pub fn manual_seed(seed: u64) {
    SEED_BASE.store(seed, Ordering::SeqCst);
    SEED_COUNTER.store(0, Ordering::SeqCst);
}

/// The next seed of the process-wide stream: `mix(base, counter++)`.
pub fn next_seed() -> u64 {
    let n = SEED_COUNTER.fetch_add(1, Ordering::SeqCst);
    let base = SEED_BASE.load(Ordering::SeqCst);
    // splitmix64 of the pair: consecutive calls get unrelated seeds.
    crate::hash::splitmix64(base ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03))
}
