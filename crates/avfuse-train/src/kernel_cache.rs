//! The persistent GPU kernel cache (CUDA runs).
//!
//! Burn's CUDA backend (CubeCL) compiles every kernel with NVRTC at run time and autotunes
//! the heavy ones (matmul, conv) by benchmarking candidates. Both results can live on disk in
//! a CubeCL "environment", so a second run of the same model skips them. Out of the box
//! CubeCL caches autotune results only, under the *Cargo target directory* of the build,
//! which a deployed binary does not have, and leaves the compiled-kernel cache off.
//!
//! avfuse therefore configures CubeCL before the first CUDA device is opened:
//! - compiled kernels **and** autotune results are cached;
//! - in [`kernel_cache_dir`]: `$AVFUSE_KERNEL_CACHE`, else `$XDG_CACHE_HOME/avfuse/kernels`,
//!   else `~/.cache/avfuse/kernels`;
//! - CubeCL's own environment variables (`CUBECL_AUTOTUNE_LEVEL`, `CUBECL_AUTOTUNE_CACHE`, ...)
//!   still apply on top;
//! - a `cubecl.toml` / `CubeCL.toml` / `burn.toml` found in the working directory or a parent
//!   wins over all of this (CubeCL reads it itself), for users who tune CubeCL directly.

use std::path::{Path, PathBuf};

/// Environment variable naming the kernel cache directory.
pub const CACHE_ENV: &str = "AVFUSE_KERNEL_CACHE";

/// The directory avfuse keeps CubeCL's kernel and autotune caches in (see the module docs).
/// Falls back to `./.avfuse-kernel-cache` when no home directory is known.
pub fn kernel_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os(CACHE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(x).join("avfuse").join("kernels");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(h)
            .join(".cache")
            .join("avfuse")
            .join("kernels");
    }
    PathBuf::from(".avfuse-kernel-cache")
}

/// A CubeCL configuration file that takes precedence, if one is found from `start` upwards
/// (the files and search order CubeCL itself uses).
pub fn cubecl_config_file(start: &Path) -> Option<PathBuf> {
    let names = ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"];
    start
        .ancestors()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// What [`configure`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheSetup {
    /// avfuse's settings were installed: kernels and autotune results cached in this directory.
    Installed(PathBuf),
    /// A CubeCL configuration file was found and left in charge.
    FromFile(PathBuf),
    /// CubeCL was already configured in this process (its first use wins).
    AlreadyConfigured,
    /// This build has no GPU backend: nothing to configure.
    NotApplicable,
}

impl std::fmt::Display for CacheSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheSetup::Installed(d) => {
                write!(f, "kernels and autotune results cached in {}", d.display())
            }
            CacheSetup::FromFile(p) => write!(f, "CubeCL configured by {}", p.display()),
            CacheSetup::AlreadyConfigured => write!(f, "CubeCL already configured in this process"),
            CacheSetup::NotApplicable => write!(f, "no GPU backend in this build"),
        }
    }
}

/// Configure CubeCL's persistent caches (see the module docs). Call before the first CUDA
/// device is created; later calls report [`CacheSetup::AlreadyConfigured`]. Creates the cache
/// directory; an error names it when it cannot be created.
#[cfg(feature = "cuda")]
pub fn configure() -> Result<CacheSetup, crate::TrainError> {
    use cubecl_runtime::config::cache::CacheConfig;
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};

    if let Some(file) = std::env::current_dir()
        .ok()
        .and_then(|d| cubecl_config_file(&d))
    {
        return Ok(CacheSetup::FromFile(file));
    }
    let dir = kernel_cache_dir();
    std::fs::create_dir_all(&dir).map_err(|source| crate::TrainError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut cfg = CubeClRuntimeConfig::default();
    cfg.compilation.cache = true;
    cfg.environment.path = CacheConfig::Directory(dir.clone());
    let cfg = cfg.override_from_env();
    if CubeClRuntimeConfig::try_set(cfg) {
        tracing::info!("GPU kernel cache: {}", dir.display());
        Ok(CacheSetup::Installed(dir))
    } else {
        Ok(CacheSetup::AlreadyConfigured)
    }
}

/// Without a GPU backend there is nothing to configure.
#[cfg(not(feature = "cuda"))]
pub fn configure() -> Result<CacheSetup, crate::TrainError> {
    Ok(CacheSetup::NotApplicable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_cubecl_file_in_a_parent() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a").join("b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(cubecl_config_file(&deep), None);
        std::fs::write(root.path().join("a").join("cubecl.toml"), "").unwrap();
        assert_eq!(
            cubecl_config_file(&deep),
            Some(root.path().join("a").join("cubecl.toml"))
        );
    }

    #[test]
    fn cache_dir_is_absolute_or_local() {
        // Whatever the environment, the directory ends in avfuse's own folder or is the
        // explicit override.
        let d = kernel_cache_dir();
        let s = d.to_string_lossy();
        assert!(
            std::env::var_os(CACHE_ENV).is_some()
                || s.ends_with("avfuse/kernels")
                || s == ".avfuse-kernel-cache",
            "{s}"
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn nothing_to_configure_without_cuda() {
        assert_eq!(configure().unwrap(), CacheSetup::NotApplicable);
    }
}
