//! `avfuse doctor`: what a GPU (and a real-video) run needs, checked on this machine.
//!
//! Every check loads or looks for the real thing (the shared libraries are opened with
//! `dlopen`, headers and directories are looked up on disk); nothing is assumed from the
//! build alone.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use avfuse_train::kernel_cache::{self, kernel_cache_dir};
use avfuse_train::trainer::ensure_writable_dir;

use crate::cli::DoctorArgs;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Present and usable.
    Ok,
    /// Not needed for CPU runs, or only for some uses; explained in the detail.
    Warn,
    /// Missing: a GPU run will fail.
    Missing,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The result.
    pub status: Status,
    /// What was found, or what to do.
    pub detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Try to `dlopen` each name in turn; the first that loads.
fn load_any(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        // SAFETY: loading a shared library runs its initialisers. These are the NVIDIA
        // driver/runtime libraries the CUDA backend itself would load in this process; the
        // handle is dropped (dlclose) right away and no symbol is called.
        unsafe { libloading::Library::new(n) }
            .ok()
            .map(|_| n.to_string())
    })
}

/// The CUDA toolkit root: `$CUDA_PATH`, else `$CUDA_HOME`, else `/usr/local/cuda`.
fn cuda_root() -> (PathBuf, &'static str) {
    for var in ["CUDA_PATH", "CUDA_HOME"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return (PathBuf::from(p), var);
        }
    }
    (PathBuf::from("/usr/local/cuda"), "default")
}

fn nvidia_smi() -> Option<String> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,driver_version,memory.total",
            "--format=csv,noheader",
        ])
        .output()
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .replace('\n', "; ")
    })
}

/// Run every check.
pub fn checks() -> Vec<Check> {
    use Status::*;
    let mut v = Vec::new();
    let cuda_built = cfg!(feature = "cuda");
    v.push(check(
        "build: cuda feature",
        if cuda_built { Ok } else { Missing },
        if cuda_built {
            "built with --features cuda".to_string()
        } else {
            "built without CUDA: rebuild with `cargo build --release --features cuda`".to_string()
        },
    ));
    v.push(match nvidia_smi() {
        Some(gpus) if !gpus.is_empty() => check("driver: nvidia-smi", Ok, gpus),
        _ => check(
            "driver: nvidia-smi",
            Missing,
            "nvidia-smi not found or no GPU listed",
        ),
    });
    v.push(match load_any(&["libcuda.so.1", "libcuda.so"]) {
        Some(n) => check("driver: libcuda", Ok, format!("{n} loads")),
        None => check(
            "driver: libcuda",
            Missing,
            "libcuda.so.1 does not load: install the NVIDIA driver (or run inside a GPU container)",
        ),
    });
    let nvrtc = [
        "libnvrtc.so.13",
        "libnvrtc.so.12",
        "libnvrtc.so",
        "libnvrtc.alt.so.13",
        "libnvrtc.alt.so.12",
    ];
    v.push(match load_any(&nvrtc) {
        Some(n) => check("runtime: libnvrtc (kernel compiler)", Ok, format!("{n} loads")),
        None => check(
            "runtime: libnvrtc (kernel compiler)",
            Missing,
            "no libnvrtc.so.{13,12} on the library path: install the CUDA toolkit's NVRTC and add its lib64 to LD_LIBRARY_PATH",
        ),
    });
    let (root, from) = cuda_root();
    let header = root.join("include").join("cuda.h");
    v.push(if header.is_file() {
        check(
            "toolkit: CUDA headers",
            Ok,
            format!("{} (from {from})", header.display()),
        )
    } else {
        check(
            "toolkit: CUDA headers",
            Missing,
            format!(
                "{} not found (from {from}): NVRTC needs the toolkit headers; set CUDA_PATH=/usr/local/cuda (or wherever include/cuda.h is)",
                header.display()
            ),
        )
    });
    v.push(match load_any(&["libnccl.so", "libnccl.so.2"]) {
        Some(n) if n == "libnccl.so" => check("multi-GPU: NCCL", Ok, "libnccl.so loads"),
        Some(n) => check(
            "multi-GPU: NCCL",
            Warn,
            format!("only {n} loads; Burn's NCCL loader looks for libnccl.so: add a symlink libnccl.so -> {n}"),
        ),
        None => check(
            "multi-GPU: NCCL",
            Warn,
            "libnccl.so not found: needed only for --devices with several GPUs",
        ),
    });
    let dir = kernel_cache_dir();
    let from_file = std::env::current_dir()
        .ok()
        .and_then(|d| kernel_cache::cubecl_config_file(&d));
    v.push(match (from_file, ensure_writable_dir(&dir)) {
        (Some(f), _) => check(
            "kernel cache",
            Warn,
            format!(
                "{} configures CubeCL and takes precedence over avfuse's cache settings",
                f.display()
            ),
        ),
        (None, std::result::Result::Ok(())) => check(
            "kernel cache",
            Ok,
            format!(
                "{} (writable; set {} to move it)",
                dir.display(),
                kernel_cache::CACHE_ENV
            ),
        ),
        (None, Err(e)) => check(
            "kernel cache",
            Missing,
            format!(
                "{} is not writable ({e}): set {} to a writable directory",
                dir.display(),
                kernel_cache::CACHE_ENV
            ),
        ),
    });
    let ffmpeg = cfg!(feature = "ffmpeg");
    v.push(check(
        "video: ffmpeg feature",
        if ffmpeg { Ok } else { Warn },
        if ffmpeg {
            "built with --features ffmpeg (avfuse prepare, check-shortcuts)"
        } else {
            "built without FFmpeg: `avfuse prepare` needs `--features ffmpeg`"
        },
    ));
    v.push(check(
        "cpu",
        Ok,
        format!(
            "{} threads{}",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_features()
        ),
    ));
    v
}

fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let f: Vec<&str> = [
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ]
        .into_iter()
        .filter_map(|(n, on)| on.then_some(n))
        .collect();
        format!(
            ", {}",
            if f.is_empty() {
                "no AVX2".into()
            } else {
                f.join(" ")
            }
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        String::new()
    }
}

/// `avfuse doctor`: print the report; with `--gpu`, fail when a GPU run would.
pub fn run(a: DoctorArgs) -> Result<()> {
    let checks = checks();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for c in &checks {
        let tag = match c.status {
            Status::Ok => "ok     ",
            Status::Warn => "note   ",
            Status::Missing => "MISSING",
        };
        println!("{tag} {:width$}  {}", c.name, c.detail);
    }
    let missing: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Missing)
        .map(|c| c.name)
        .collect();
    if missing.is_empty() {
        println!("\nready for --device cuda");
    } else {
        println!("\nnot ready for --device cuda: {}", missing.join(", "));
        if a.gpu {
            anyhow::bail!("GPU requirements missing: {}", missing.join(", "));
        }
    }
    Ok(())
}
