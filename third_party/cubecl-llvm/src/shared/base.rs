//! **Stub** of `cubecl_llvm::shared::base`: `PlironCompiler` and its options/artifacts with
//! the real field names and derives, but no LLVM. Compiling always fails with an error that
//! points at the `cpp` (NVRTC) feature of `cubecl-cuda`.

#[cfg(feature = "nvptx")]
use crate::nvptx::ptx_version::PtxVersion;
use crate::target::LlvmTarget;
use cubecl_core::ir::amd::GfxArch;
#[cfg(feature = "nvptx")]
use cubecl_core::ir::nvidia::SmArch;
use cubecl_environment::backtrace::BackTrace;
use cubecl_runtime::{
    compiler::{CompilationError, Compiler},
    config::compilation::F16Evaluation,
    kernel::{BufferIOAttr, KernelDefinition},
};

/// The error every stubbed compilation returns.
const DISABLED: &str = "cubecl-llvm is a local offline stub (third_party/cubecl-llvm): the \
    LLVM/pliron kernel compiler is not built. Enable cubecl-cuda's `cpp` feature so CUDA \
    kernels are compiled by NVRTC (avfuse's `cuda` feature does this).";

/// **Stub** of the pliron/LLVM kernel compiler (same fields and derives as the real
/// `cubecl-llvm 0.11.3`). It implements CubeCL's `Compiler` trait, but `compile` always
/// returns `CompilationError::Generic`: the LLVM/NVPTX path is disabled in this offline build,
/// and CUDA kernels are compiled by NVRTC through `cubecl-cuda`'s `cpp` feature.
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    /// **Stub**: the LLVM target the real compiler would emit for (unused: nothing compiles).
    pub target: LlvmTarget,
}

/// **Stub** of the pliron compiler options (same fields, derives and `Default` as the real
/// crate, so `cubecl-cuda`'s `PlironOptions { .., ..Default::default() }` compiles). Nothing
/// reads them: the LLVM path is disabled and CUDA kernels are compiled by NVRTC (`cpp`).
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// **Stub**: minimum CPU buffer alignment (unused; the LLVM path is disabled).
    pub cpu_buffer_alignment: Option<u32>,
    /// **Stub**: AMDGPU architecture (unused; the LLVM path is disabled).
    pub arch: Option<GfxArch>,
    /// **Stub**: CPU f16 evaluation precision (unused; the LLVM path is disabled).
    pub f16_evaluation: F16Evaluation,
    /// **Stub**: NVPTX architecture (unused; the LLVM path is disabled).
    #[cfg(feature = "nvptx")]
    pub sm_arch: Option<SmArch>,
    /// **Stub**: PTX version to emit (unused; the LLVM path is disabled).
    #[cfg(feature = "nvptx")]
    pub ptx_version: Option<PtxVersion>,
    /// **Stub**: pass scalars and static metadata in the parameter block (unused here).
    pub grid_constants: bool,
}

/// **Stub** of a compiled PTX module (same fields and derives as the real crate). Never
/// constructed: the LLVM/NVPTX path is disabled; NVRTC compiles CUDA kernels (`cpp` feature).
#[derive(Clone, Debug)]
#[cfg(feature = "nvptx")]
pub struct NvptxModule {
    /// **Stub**: NUL-terminated PTX assembly.
    pub ptx: Vec<core::ffi::c_char>,
    /// **Stub**: kernel entry point symbol.
    pub entrypoint: String,
    /// **Stub**: IR for logging and cache keys.
    pub ir: String,
    /// **Stub**: shared memory required per launch, in bytes.
    pub shared_memory_size: usize,
    /// **Stub**: buffer access modes in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// **Stub** of the compiled kernel artifact. Only the `NvptxCode` variant `cubecl-cuda`
/// matches on is kept (the real crate also has `Jit` and `AmdGpuCode`, hence
/// `#[non_exhaustive]`). Never constructed: the LLVM/NVPTX path is disabled and CUDA kernels
/// are compiled by NVRTC through `cubecl-cuda`'s `cpp` feature.
#[derive(Clone)]
#[non_exhaustive]
pub enum PlironArtifact {
    /// **Stub**: a PTX module emitted by LLVM (never produced by this stub).
    #[cfg(feature = "nvptx")]
    NvptxCode(NvptxModule),
}

/// **Stub**: prints the module's IR, like the real crate.
impl core::fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let _ = &f;
        match *self {
            #[cfg(feature = "nvptx")]
            PlironArtifact::NvptxCode(ref module) => write!(f, "{}", module.ir),
        }
    }
}

/// **Stub** `Compiler` implementation: `compile` always fails (the LLVM/NVPTX path is
/// disabled in this offline build; `cubecl-cuda`'s `cpp` feature makes NVRTC compile the
/// kernels instead). `extension` and `lang_tag` answer like the real crate.
impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(
        &mut self,
        kernel: KernelDefinition,
        compilation_options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        let _ = (kernel, compilation_options);
        Err(CompilationError::Generic {
            reason: DISABLED.to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    fn buffer_io(repr: &Self::Representation) -> Option<Vec<BufferIOAttr>> {
        match *repr {
            #[cfg(feature = "nvptx")]
            PlironArtifact::NvptxCode(ref module) => Some(module.io.clone()),
        }
    }

    fn extension(&self) -> &'static str {
        match self.target {
            LlvmTarget::Cpu => "plir",
            #[cfg(feature = "nvptx")]
            LlvmTarget::Nvptx => "ll",
        }
    }

    fn lang_tag(&self) -> &'static str {
        match self.target {
            LlvmTarget::Cpu => "mlir",
            #[cfg(feature = "nvptx")]
            LlvmTarget::Nvptx => "llvm",
        }
    }
}
