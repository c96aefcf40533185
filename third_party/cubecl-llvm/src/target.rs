//! **Stub** of `cubecl_llvm::target`: the LLVM compilation targets, kept only so
//! `cubecl-cuda` can name `LlvmTarget::Nvptx`. The LLVM path is disabled in this stub
//! (kernels are compiled by NVRTC through `cubecl-cuda`'s `cpp` feature).

/// **Stub** of the LLVM compilation target enum (same variants and derives as the real
/// `cubecl-llvm 0.11.3`, minus AMDGPU). Selecting a target compiles nothing: the LLVM path is
/// disabled in this offline build and CUDA kernels go through NVRTC (`cpp` feature).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    /// **Stub**: the CPU JIT target (the real crate's default). Nothing compiles for it here.
    #[default]
    Cpu,
    /// **Stub**: the NVPTX (CUDA) target `cubecl-cuda` names. Nothing compiles for it here:
    /// the LLVM path is disabled and CUDA kernels are compiled by NVRTC (`cpp` feature).
    #[cfg(feature = "nvptx")]
    Nvptx,
}
