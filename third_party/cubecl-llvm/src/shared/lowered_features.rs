//! **Stub** of `cubecl_llvm::shared::lowered_features`. The real module narrows a device's
//! advertised features to what the LLVM backend lowers; `cubecl-cuda` only calls it when the
//! LLVM backend is selected, which never happens with its `cpp` (NVRTC) feature on, so here
//! it is a no-op.

use cubecl_core::ir::DeviceProperties;

/// **Stub** of the GPU target a device's features are narrowed for (NVPTX only; the real
/// crate also has AMDGPU). Only exists so `cubecl-cuda` compiles: the LLVM path is disabled
/// and CUDA kernels are compiled by NVRTC (`cpp` feature).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuTarget {
    /// **Stub**: NVIDIA PTX, the target `cubecl-cuda` names.
    #[cfg(feature = "nvptx")]
    Nvptx,
}

/// **Stub, no-op**: the real function removes features the LLVM backend cannot lower.
/// `cubecl-cuda` calls it only when its LLVM backend is the default, i.e. never when its
/// `cpp` feature is on (kernels compiled by NVRTC), so leaving `props` untouched is correct.
pub fn restrict_features(props: &mut DeviceProperties, target: GpuTarget) {
    let _ = (props, target);
}
