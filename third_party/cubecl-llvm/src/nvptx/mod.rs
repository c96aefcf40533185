//! **Stub** of `cubecl_llvm::nvptx`: only `ptx_version` is kept, because `cubecl-cuda`
//! computes a `PtxVersion` from the driver even when its C++/NVRTC backend is selected. The
//! LLVM/NVPTX code generator itself is disabled in this offline stub.

pub mod ptx_version;
