//! Shared by the integration tests that train on tiny synthetic data: a two-split dataset
//! and a model small enough to train an epoch in well under a second.

use std::path::Path;

use avfuse_media::synth::{SynthConfig, synth_split};
use avfuse_train::config::Config;
use avfuse_train::{TrainError, TrainOptions};
use burn::tensor::Device;

/// Writes synthetic `train` (`n_train` clips) and `val` (`n_val`) splits of 4 frames of
/// 32x32 px under `root` (seed 5, 16 clips per shard).
pub fn tiny_data(root: &Path, n_train: usize, n_val: usize) {
    let cfg = SynthConfig {
        frames: 4,
        image_size: 32,
        ..SynthConfig::default()
    };
    synth_split(&cfg, root, "train", n_train, 5, 16, &|_| {}).unwrap();
    synth_split(&cfg, root, "val", n_val, 5, 16, &|_| {}).unwrap();
}

/// The configuration for [`tiny_data`]: channels `[4, 8]`, embeddings and fusion 8, head 8,
/// batch 8, no early stopping, no progress bars; then the `extra` `key=value` overrides.
pub fn tiny_config(extra: &[&str]) -> Result<Config, TrainError> {
    let sets: Vec<String> = [
        "dataset.synth.frames=4",
        "dataset.synth.image_size=32",
        "model.video.channels=[4, 8]",
        "model.video.embed_dim=8",
        "model.audio.channels=[4, 8]",
        "model.audio.embed_dim=8",
        "fusion.dim=8",
        "model.head.hidden=8",
        "training.batch_size=8",
        "training.early_stopping.patience=0",
        "logging.progress=false",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    Config::load(None, &sets)
}

/// Options of a quiet CPU training run on `data` into `out` (`resume` to continue it).
pub fn train_options(data: &Path, out: &Path, resume: bool) -> TrainOptions {
    TrainOptions {
        data_root: data.to_path_buf(),
        out_dir: out.to_path_buf(),
        resume,
        device: Device::flex(),
        progress: false,
        stop_after_epochs: None,
    }
}
