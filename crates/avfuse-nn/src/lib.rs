//! Multimodal regularisation layers for Burn.
//!
//! This crate owns the layers that make a multimodal network robust to a missing modality
//! (design sections 2.1-2.3): the dropout family with PyTorch's semantics on one fused
//! seeded kernel ([`dropout`]), modality dropout ([`modality_dropout::ModalityDropout`]),
//! BatchNorm over present samples only ([`MaskedBatchNorm`]) and the presence mask every
//! layer shares ([`presence::mask_batch`]).
//!
//! It depends on Burn only, so any Burn user can reuse it.

pub mod dropout;
mod hash;
pub mod masked_batch_norm;
pub mod modality_dropout;
pub mod presence;

pub use masked_batch_norm::{MaskedBatchNorm, MaskedBatchNormConfig, MaskedBatchNormError};
pub use presence::{PresenceError, mask_batch, presence_tensor};
