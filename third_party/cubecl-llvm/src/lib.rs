//! **Stub** of `cubecl-llvm 0.11.3` for offline builds (see this crate's README.md).
//!
//! The real crate lowers CubeCL kernels through pliron and LLVM; its build dependency
//! (`tracel-llvm-bundler`) downloads a prebuilt LLVM from the internet, so Burn's CUDA backend
//! cannot be built offline. `cubecl-cuda 0.11.3` depends on it unconditionally but only needs
//! it for its optional LLVM/NVPTX kernel backend. This stub exports exactly the items
//! `cubecl-cuda` names, with the real signatures; the LLVM/NVPTX path is disabled (its
//! compiler always returns an error) and kernels are compiled by NVRTC through
//! `cubecl-cuda`'s `cpp` feature, which makes `CudaBackend::Cpp` the default.
//!
//! Only `cubecl-cuda` is supported: `cubecl-cpu` (Burn's `cpu` backend) and `cubecl-hip`
//! (Burn's `rocm` backend) use items this stub does not provide.

#![warn(missing_docs)]

#[cfg(feature = "nvptx")]
pub mod nvptx;
pub mod shared;
pub mod target;

#[cfg(feature = "nvptx")]
pub use shared::NvptxModule;
pub use shared::{PlironArtifact, PlironCompiler, PlironOptions};
pub use target::LlvmTarget;
