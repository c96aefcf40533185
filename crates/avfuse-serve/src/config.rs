//! Settings of the HTTP service: the `serve` section of a YAML file, then command-line
//! flags, over safe defaults.
//!
//! ```yaml
//! serve:
//!   addr: 127.0.0.1:8080
//!   max_upload_bytes: 104857600   # 100 MiB; larger uploads get 413
//!   max_duration_s: 120           # longer clips get 422
//!   max_frame_pixels: 8847360     # 4096 x 2160; larger frames get 422 (from the header)
//!   max_frame_side: 4096
//!   request_timeout_s: 60         # whole request: upload, queue and inference; then 504
//!   workers: 0                    # inferences at once; 0 = one per core
//!   queue_depth: 64               # requests waiting for a worker; beyond: 503 + Retry-After
//!   retry_after_s: 1
//!   allow_dir: null               # server-side paths ({"path": ...}) only inside it
//!   temp_dir: null                # uploads go here (default: a fresh dir in the OS temp dir)
//! ```
//!
//! Unknown keys are errors naming the key; other top-level sections of the file are
//! ignored, so the section can sit in a file of its own or beside other tools' settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::MediaLimits;
use crate::error::{Result, ServeError};

/// The `serve` section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on (default `127.0.0.1:8080`; port 0 picks a free one).
    pub addr: String,
    /// Largest accepted upload in bytes (default 100 MiB): 413 beyond.
    pub max_upload_bytes: u64,
    /// Longest accepted clip, seconds (default 120): 422 beyond.
    pub max_duration_s: f64,
    /// Largest accepted frame, `width * height` (default 4096 x 2160): 422 beyond.
    pub max_frame_pixels: u64,
    /// Longest accepted frame side, pixels (default 4096): 422 beyond.
    pub max_frame_side: u32,
    /// Time limit of a whole `POST /v1/predict` (upload, queue, inference), seconds
    /// (default 60): 504 beyond.
    pub request_timeout_s: f64,
    /// Inferences running at once (default 0: one per CPU core).
    pub workers: usize,
    /// Requests that may wait for a free worker (default 64); when full, 503 with
    /// `Retry-After`.
    pub queue_depth: usize,
    /// `Retry-After` of a 503, seconds (default 1).
    pub retry_after_s: u64,
    /// `{"path": ...}` requests may only name files inside this directory (canonicalised;
    /// default none: server-side paths are refused).
    pub allow_dir: Option<PathBuf>,
    /// Directory for uploads in progress (default: a fresh directory in the OS temp dir,
    /// removed at exit). Every upload is removed when its request ends, however it ends.
    pub temp_dir: Option<PathBuf>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let limits = MediaLimits::default();
        Self {
            addr: "127.0.0.1:8080".into(),
            max_upload_bytes: 100 * 1024 * 1024,
            max_duration_s: limits.max_duration_s,
            max_frame_pixels: limits.max_frame_pixels,
            max_frame_side: limits.max_frame_side,
            request_timeout_s: 60.0,
            workers: 0,
            queue_depth: 64,
            retry_after_s: 1,
            allow_dir: None,
            temp_dir: None,
        }
    }
}

impl ServeConfig {
    /// The `serve` section of the YAML file `path` over the defaults (the defaults alone
    /// when the file has no such section).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ServeError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// As [`ServeConfig::from_file`], from text; `source` names it in errors.
    pub fn from_yaml(text: &str, source: &str) -> Result<Self> {
        let v: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| ServeError::Config(format!("{source}: invalid YAML: {e}")))?;
        let section = match &v {
            serde_yaml::Value::Null => None,
            serde_yaml::Value::Mapping(m) => m.get("serve").cloned(),
            _ => {
                return Err(ServeError::Config(format!(
                    "{source}: the top level must be a mapping of sections"
                )));
            }
        };
        let cfg = match section {
            None | Some(serde_yaml::Value::Null) => Self::default(),
            Some(s) => serde_yaml::from_value(s)
                .map_err(|e| ServeError::Config(format!("{source}: serve: {e}")))?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Range-checks every value; errors name the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ServeError::Config(format!("serve.{m}")));
        if self.addr.parse::<SocketAddr>().is_err() {
            return bad(format!(
                "addr = {:?}: expected IP:PORT, e.g. 127.0.0.1:8080",
                self.addr
            ));
        }
        if self.max_upload_bytes == 0 {
            return bad("max_upload_bytes = 0: must be > 0".into());
        }
        if !(self.request_timeout_s.is_finite() && self.request_timeout_s > 0.0) {
            return bad(format!(
                "request_timeout_s = {}: must be a finite number > 0",
                self.request_timeout_s
            ));
        }
        if self.retry_after_s == 0 {
            return bad("retry_after_s = 0: must be >= 1".into());
        }
        self.limits()
            .validate()
            .map_err(|e| ServeError::Config(format!("serve.{e}")))
    }

    /// The media limits part.
    pub fn limits(&self) -> MediaLimits {
        MediaLimits {
            max_duration_s: self.max_duration_s,
            max_frame_pixels: self.max_frame_pixels,
            max_frame_side: self.max_frame_side,
        }
    }

    /// Workers to run: `workers`, or the number of CPU cores when 0.
    pub fn effective_workers(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_over_defaults_and_unknown_keys_named() {
        let c = ServeConfig::from_yaml(
            "training: {epochs: 3}\nserve:\n  queue_depth: 4\n  max_duration_s: 10\n",
            "f.yaml",
        )
        .unwrap();
        assert_eq!(c.queue_depth, 4);
        assert_eq!(c.max_duration_s, 10.0);
        assert_eq!(c.max_upload_bytes, ServeConfig::default().max_upload_bytes);
        assert_eq!(
            ServeConfig::from_yaml("other: 1\n", "f.yaml").unwrap(),
            ServeConfig::default()
        );
        let e = ServeConfig::from_yaml("serve: {queue_dept: 4}\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.yaml") && e.contains("queue_dept"), "{e}");
        let e = ServeConfig::from_yaml("serve: {request_timeout_s: -1}\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("serve.request_timeout_s"), "{e}");
        let e = ServeConfig::from_yaml("serve: {addr: nowhere}\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("serve.addr"), "{e}");
        assert!(ServeConfig::default().effective_workers() >= 1);
    }
}
