//! Multimodal regularisation layers for Burn.
//!
//! This crate owns the layers that make a multimodal network robust to a missing modality.
//! Today it holds the presence-mask primitive every later layer builds on
//! ([`presence::mask_batch`]); the dropout family, modality dropout and masked BatchNorm
//! (design sections 2.1-2.4) land here next.
//!
//! It depends on Burn only, so any Burn user can reuse it.

pub mod dropout;
pub mod modality_dropout;
pub mod presence;

pub use presence::{PresenceError, mask_batch, presence_tensor};
