//! `avfuse eval`: metrics on any split, per-clip predictions, and the modality robustness
//! table (both / video only / audio only).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use avfuse_media::io::atomic_write;
use avfuse_metrics::{BinaryReport, binary_report};
use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;
use tracing::info;

use crate::checkpoint::Checkpoint;
use crate::data::{Dataset, ModalitySet};
use crate::error::{Result, TrainError};
use crate::predict::predict;
use crate::trainer::{ensure_writable_dir, load_model};

/// How to run [`evaluate`].
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Path of the checkpoint (for messages and the report).
    pub checkpoint: PathBuf,
    /// Split directory (`<root>/<split>`).
    pub split_dir: PathBuf,
    /// Where `eval.json` and the CSV files go.
    pub out_dir: PathBuf,
    /// Modality sets to evaluate (the first is the headline).
    pub sets: Vec<ModalitySet>,
    /// Compute device (no autodiff needed).
    pub device: Device,
    /// Inference batch size; `None` uses the checkpoint's `evaluation.batch_size`.
    pub batch_size: Option<usize>,
    /// Decision threshold; `None` uses the checkpoint's `evaluation.threshold`.
    pub threshold: Option<f64>,
}

/// Scores of one fake kind (or `real`).
#[derive(Clone, Debug, Serialize)]
pub struct KindStats {
    /// Clips of this kind.
    pub n: usize,
    /// Mean fake probability.
    pub mean_probability: f64,
    /// Fraction predicted fake at the threshold.
    pub predicted_fake: f64,
}

/// Results under one modality set.
#[derive(Clone, Debug, Serialize)]
pub struct SetResult {
    /// Clip-level metrics (one clip is one video here, so clip and video level coincide).
    pub metrics: BinaryReport,
    /// Breakdown by clip kind (from the manifest).
    pub per_kind: BTreeMap<String, KindStats>,
}

/// The content of `eval.json`.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// Evaluated split directory.
    pub split_dir: String,
    /// Checkpoint file.
    pub checkpoint: String,
    /// Epoch the checkpoint was written at.
    pub checkpoint_epoch: usize,
    /// Clips evaluated.
    pub clips: usize,
    /// Decision threshold used.
    pub threshold: f64,
    /// Level of the metrics: `clip` (each clip is one video).
    pub level: &'static str,
    /// Results keyed by modality set name (`both`, `video_only`, `audio_only`).
    pub results: BTreeMap<String, SetResult>,
}

/// Evaluate a loaded checkpoint `ckpt` on a split. Writes `eval.json` and one
/// `predictions_<set>.csv` per modality set (`clip_id,label,kind,probability`) into
/// `out_dir`, atomically; returns the report.
pub fn evaluate(ckpt: &Checkpoint, opts: &EvalOptions) -> Result<EvalReport> {
    if opts.sets.is_empty() {
        return Err(TrainError::Config("no modality set to evaluate".into()));
    }
    let ds = Dataset::load(&opts.split_dir)?;
    ds.check_layout(&ckpt.meta.layout)?;
    ensure_writable_dir(&opts.out_dir)?;
    let cfg = &ckpt.meta.config;
    let batch_size = opts.batch_size.unwrap_or(cfg.evaluation.batch_size);
    let threshold = opts.threshold.unwrap_or(cfg.evaluation.threshold);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(TrainError::Config(format!(
            "threshold = {threshold}: must be in [0, 1]"
        )));
    }
    let model = load_model(ckpt, &opts.checkpoint, &opts.device)?.valid();

    let mut results = BTreeMap::new();
    for &set in &opts.sets {
        let presence = ds.presence_for(set);
        let preds = predict(
            &model,
            &ds,
            &presence,
            &ckpt.meta.normalizer,
            batch_size,
            &opts.device,
        )?;
        let metrics = binary_report(&ds.data.labels, &preds.probs, threshold)?;
        let mut per_kind: BTreeMap<String, (usize, f64, usize)> = BTreeMap::new();
        let mut csv = csv::Writer::from_writer(Vec::new());
        let csv_err = |e: csv::Error| TrainError::Config(format!("predictions CSV: {e}"));
        csv.write_record(["clip_id", "label", "kind", "probability"])
            .map_err(csv_err)?;
        for (clip, &p) in ds.data.clips.iter().zip(&preds.probs) {
            let e = per_kind.entry(clip.kind.clone()).or_default();
            e.0 += 1;
            e.1 += p;
            e.2 += usize::from(p >= threshold);
            csv.write_record([
                clip.clip_id.as_str(),
                &clip.label.to_string(),
                clip.kind.as_str(),
                &format!("{p:.6}"),
            ])
            .map_err(csv_err)?;
        }
        let bytes = csv
            .into_inner()
            .map_err(|e| TrainError::Config(format!("predictions CSV: {e}")))?;
        atomic_write(
            &opts.out_dir.join(format!("predictions_{}.csv", set.name())),
            &bytes,
        )?;
        let per_kind = per_kind
            .into_iter()
            .map(|(k, (n, sum, fake))| {
                (
                    k,
                    KindStats {
                        n,
                        mean_probability: sum / n as f64,
                        predicted_fake: fake as f64 / n as f64,
                    },
                )
            })
            .collect();
        info!(
            set = set.name(),
            auc = metrics.auc.unwrap_or(f64::NAN),
            ap = metrics.ap.unwrap_or(f64::NAN),
            accuracy = metrics.accuracy,
            "evaluated {}",
            ds.dir.display()
        );
        results.insert(set.name().to_string(), SetResult { metrics, per_kind });
    }
    let report = EvalReport {
        split_dir: ds.dir.display().to_string(),
        checkpoint: opts.checkpoint.display().to_string(),
        checkpoint_epoch: ckpt.meta.epoch,
        clips: ds.len(),
        threshold,
        level: "clip",
        results,
    };
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| TrainError::Config(format!("eval.json: {e}")))?;
    atomic_write(&opts.out_dir.join("eval.json"), &json)?;
    Ok(report)
}

/// A plain-text table of AUC / AP / accuracy / F1 per modality set.
pub fn robustness_table(report: &EvalReport) -> String {
    let fmt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a".into());
    let mut s = String::from("modalities     AUC     AP      acc     F1\n");
    for set in ModalitySet::ALL {
        if let Some(r) = report.results.get(set.name()) {
            let m = &r.metrics;
            let _ = writeln!(
                s,
                "{:<12} {:>7} {:>7} {:>7.4} {:>7.4}",
                set.name(),
                fmt(m.auc),
                fmt(m.ap),
                m.accuracy,
                m.f1
            );
        }
    }
    s
}

/// Path of the best checkpoint inside a run directory.
pub fn best_checkpoint(run_dir: &Path) -> PathBuf {
    run_dir
        .join(crate::trainer::files::CHECKPOINTS)
        .join(crate::trainer::files::BEST)
}
