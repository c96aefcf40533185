//! **Stub** (verbatim logic) of `cubecl_llvm::nvptx::ptx_version`: `cubecl-cuda` calls
//! `PtxVersion::for_driver` at device init and keeps the value in its compilation options,
//! where only the (disabled) LLVM/NVPTX backend reads it. With the `cpp` feature kernels are
//! compiled by NVRTC, which picks its own PTX version.

use core::fmt;

/// **Stub** of the PTX ISA version the LLVM backend would emit (8.7 is `87`). Same type,
/// derives, `for_driver` table and `Display` as the real `cubecl-llvm 0.11.3`; it only feeds
/// the LLVM/NVPTX path, which this offline stub disables (NVRTC compiles kernels instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PtxVersion(u32);

impl PtxVersion {
    /// **Stub** (same table as the real crate): the newest PTX version a driver of CUDA
    /// `driver` loads, as `cuDriverGetVersion` reports it (12.8 is `12080`); `None` below
    /// CUDA 10.0. Kept because `cubecl-cuda` calls it at device init even on the NVRTC path.
    pub fn for_driver(driver: i32) -> Option<Self> {
        DRIVER_PTX
            .iter()
            .find(|(first_driver, _)| driver >= *first_driver)
            .map(|(_, ptx)| Self(*ptx))
    }
}

/// **Stub**: formats as `ptx87`, like the real crate (used in `cubecl-cuda`'s cache
/// namespace for the LLVM backend only, which this offline stub disables).
impl fmt::Display for PtxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ptx{}", self.0)
    }
}

/// The first CUDA release to load each PTX version, newest first (copied from the real crate).
const DRIVER_PTX: &[(i32, u32)] = &[
    (13030, 93),
    (13020, 92),
    (13010, 91),
    (13000, 90),
    (12090, 88),
    (12080, 87),
    (12050, 85),
    (12040, 84),
    (12030, 83),
    (12020, 82),
    (12010, 81),
    (12000, 80),
    (11080, 78),
    (11070, 77),
    (11060, 76),
    (11050, 75),
    (11040, 74),
    (11030, 73),
    (11020, 72),
    (11010, 71),
    (11000, 70),
    (10020, 65),
    (10010, 64),
    (10000, 63),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_driver_gets_the_newest_version_it_loads() {
        assert_eq!(PtxVersion::for_driver(12080), Some(PtxVersion(87)));
        assert_eq!(PtxVersion::for_driver(12060), Some(PtxVersion(85)));
        assert_eq!(PtxVersion::for_driver(13050), Some(PtxVersion(93)));
        assert_eq!(PtxVersion::for_driver(8000), None);
        assert_eq!(PtxVersion(87).to_string(), "ptx87");
    }
}
