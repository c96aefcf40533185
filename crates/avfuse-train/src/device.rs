//! `--device cpu|cuda[:N]` parsing and construction.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::TrainError;

/// A compute device named on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// Burn's pure-Rust CPU backend (`flex`), multi-threaded with rayon.
    Cpu,
    /// CUDA GPU with this index (needs the `cuda` cargo feature).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TrainError::Device(format!("--device {s:?}: expected cpu, cuda or cuda:N"));
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceSpec::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// The Burn device (without autodiff). CUDA without the `cuda` feature is an error that
    /// says how to rebuild.
    pub fn device(self) -> Result<Device, TrainError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(i) => {
                // Before the first CUDA device opens: persistent kernel + autotune caches.
                let setup = crate::kernel_cache::configure()?;
                tracing::debug!("{setup}");
                Ok(Device::cuda(i))
            }
            #[cfg(not(feature = "cuda"))]
            DeviceSpec::Cuda(_) => Err(TrainError::Device(format!(
                "--device {self}: this avfuse was built without CUDA support; rebuild with `cargo build --release --features cuda`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        for bad in ["gpu", "cuda:", "cuda:x", "CPU", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_says_how_to_rebuild() {
        let e = DeviceSpec::Cuda(0).device().unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
