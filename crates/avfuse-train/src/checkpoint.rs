//! Checkpoints: one self-contained file, written atomically.
//!
//! Layout (little-endian): the 8-byte magic `AVFCKPT\0`, a `u32` format version (1), then
//! three length-prefixed (`u64`) sections: JSON metadata ([`CheckpointMeta`]), the model
//! weights as a Burn burnpack record, and the optimiser state as a burnpack record (empty
//! in an export without optimiser). One file rather than a directory so that replacing a
//! checkpoint is a single atomic rename: a crash leaves the previous checkpoint intact, never
//! a mix of old weights and new metadata.

use std::path::Path;

use avfuse_media::io::atomic_write;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::data::{Layout, Normalizer};
use crate::error::{Result, TrainError};
use crate::schedule::EarlyStopping;

const MAGIC: &[u8; 8] = b"AVFCKPT\0";
const VERSION: u32 = 1;

/// Everything but the tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// avfuse version that wrote the file.
    pub avfuse_version: String,
    /// Burn version the weights were written with.
    pub burn_version: String,
    /// Full configuration of the run.
    pub config: Config,
    /// Input normalisation.
    pub normalizer: Normalizer,
    /// Data layout the model was trained on.
    pub layout: Layout,
    /// Label names by class index.
    pub labels: Vec<String>,
    /// Epochs completed (1-based count).
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// Early-stopping state (best metric and its epoch).
    pub early_stopping: EarlyStopping,
    /// Validation metrics of the epoch that wrote this checkpoint.
    pub val_metrics: serde_json::Value,
    /// Seconds spent training so far.
    pub train_seconds: f64,
    /// State of a `training.scheduler: plateau` schedule (the others are functions of the
    /// step); absent in checkpoints of other schedules and of older versions.
    #[serde(default)]
    pub plateau: Option<crate::schedule::ReduceLrOnPlateau>,
}

/// A checkpoint in memory.
pub struct Checkpoint {
    /// Metadata.
    pub meta: CheckpointMeta,
    /// Model weights (burnpack bytes).
    pub model: Vec<u8>,
    /// Optimiser state (burnpack bytes; empty when absent).
    pub optimizer: Vec<u8>,
}

impl Checkpoint {
    /// Serialise and write atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let meta = serde_json::to_vec(&self.meta).map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            detail: format!("cannot serialise metadata: {e}"),
        })?;
        let mut buf = Vec::with_capacity(32 + meta.len() + self.model.len() + self.optimizer.len());
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        for section in [&meta[..], &self.model[..], &self.optimizer[..]] {
            buf.extend_from_slice(&(section.len() as u64).to_le_bytes());
            buf.extend_from_slice(section);
        }
        atomic_write(path, &buf)?;
        Ok(())
    }

    /// Read and check a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let err = |detail: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            detail,
        };
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(err("not an avfuse checkpoint (bad magic)".into()));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(err(format!(
                "format version {version}, this build reads {VERSION}"
            )));
        }
        let mut pos = 12usize;
        let mut sections: Vec<Vec<u8>> = Vec::with_capacity(3);
        for name in ["metadata", "model", "optimizer"] {
            let len_bytes: [u8; 8] = bytes
                .get(pos..pos + 8)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| err(format!("truncated before the {name} section")))?;
            let len = usize::try_from(u64::from_le_bytes(len_bytes))
                .map_err(|_| err(format!("{name} section too large")))?;
            pos += 8;
            let end = pos
                .checked_add(len)
                .filter(|&e| e <= bytes.len())
                .ok_or_else(|| {
                    err(format!(
                        "truncated {name} section ({len} bytes declared, {} left)",
                        bytes.len() - pos
                    ))
                })?;
            sections.push(bytes[pos..end].to_vec());
            pos = end;
        }
        if pos != bytes.len() {
            return Err(err(format!("{} trailing bytes", bytes.len() - pos)));
        }
        let [meta_bytes, model, optimizer]: [Vec<u8>; 3] = sections
            .try_into()
            .map_err(|_| err("expected three sections".into()))?;
        let meta: CheckpointMeta =
            serde_json::from_slice(&meta_bytes).map_err(|e| err(format!("bad metadata: {e}")))?;
        Ok(Self {
            meta,
            model,
            optimizer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            meta: CheckpointMeta {
                avfuse_version: "0.1.0".into(),
                burn_version: "0.22.1".into(),
                config: Config::default(),
                normalizer: Normalizer {
                    mel_mean: -40.0,
                    mel_std: 20.0,
                },
                layout: Layout {
                    frames: 16,
                    image_size: 64,
                    n_mels: 64,
                    mel_frames: 65,
                    mel_frames_per_step: 4,
                },
                labels: vec!["real".into(), "fake".into()],
                epoch: 3,
                step: 150,
                early_stopping: EarlyStopping::new(true, 4, 1e-3),
                val_metrics: serde_json::json!({"auc": 0.9}),
                train_seconds: 12.5,
                plateau: None,
            },
            model: vec![1, 2, 3],
            optimizer: vec![9; 100],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("last.avfc");
        let c = sample();
        c.save(&p).unwrap();
        let back = Checkpoint::load(&p).unwrap();
        assert_eq!(back.meta, c.meta);
        assert_eq!(back.model, c.model);
        assert_eq!(back.optimizer, c.optimizer);
        // No temp files left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.avfc");
        sample().save(&p).unwrap();
        let full = std::fs::read(&p).unwrap();
        for cut in [0, 5, 11, 19, 40, full.len() - 1] {
            std::fs::write(&p, &full[..cut]).unwrap();
            let e = Checkpoint::load(&p)
                .err()
                .expect("truncated checkpoint must fail");
            assert!(e.to_string().contains("c.avfc"), "{e}");
        }
        let mut bad = full.clone();
        bad[0] = b'X';
        std::fs::write(&p, &bad).unwrap();
        assert!(
            Checkpoint::load(&p)
                .err()
                .unwrap()
                .to_string()
                .contains("bad magic")
        );
        let e = Checkpoint::load(&dir.path().join("missing.avfc"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("missing.avfc"), "{e}");
    }
}
