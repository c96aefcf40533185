//! **Stub** of `cubecl_llvm::shared`: the compiler entry point and its artifact types, plus
//! `lowered_features`. The LLVM/NVPTX path is disabled in this offline stub; CUDA kernels are
//! compiled by NVRTC through `cubecl-cuda`'s `cpp` feature.

mod base;
pub mod lowered_features;

#[cfg(feature = "nvptx")]
pub use base::NvptxModule;
pub use base::{PlironArtifact, PlironCompiler, PlironOptions};
