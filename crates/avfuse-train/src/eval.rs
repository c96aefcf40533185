//! `avfuse eval`: metrics on any split at the sample and the video level, prediction files,
//! and the robustness report (every modality set, and test-time corruptions), as tables and
//! PNG plots.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use avfuse_media::cache::ManifestEntry;
use avfuse_media::io::atomic_write;
use avfuse_metrics::{
    Aggregation, BinaryReport, MulticlassReport, SamplePrediction, VideoLevelReport,
    aggregate_videos, level_reports,
};
use avfuse_report::{
    PlotOptions, PrSeries, RobustnessMetric, RobustnessRow, RocSeries, plot_pr, plot_robustness,
    plot_roc, plot_training_curves, sample_rows, training_series_from_jsonl, video_rows,
    write_atomic, write_predictions_csv, write_predictions_json, write_robustness_csv,
    write_robustness_json, write_robustness_markdown,
};
use burn::module::Module;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::checkpoint::Checkpoint;
use crate::corrupt::{Corruption, CorruptionKind, default_corruptions};
use crate::data::{Dataset, ModalitySet};
use crate::error::{Result, TrainError};
use crate::predict::{class_report, predict_corrupted};
use crate::trainer::{ensure_writable_dir, load_model};

/// How to run [`evaluate`].
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Path of the checkpoint (for messages and the report).
    pub checkpoint: PathBuf,
    /// Split directory (`<root>/<split>`).
    pub split_dir: PathBuf,
    /// Where `eval.json`, the prediction files, the robustness tables and `plots/` go.
    pub out_dir: PathBuf,
    /// Modality sets to evaluate (the first is the headline).
    pub sets: Vec<ModalitySet>,
    /// Test-time corruptions of the robustness report (empty: modality sets only). Each is
    /// evaluated with every set in `sets` that keeps the corrupted modality.
    pub corruptions: Vec<Corruption>,
    /// How clip scores of one video are combined for the video-level metrics.
    pub aggregation: Aggregation,
    /// Seed of the corruption noise.
    pub seed: u64,
    /// Draw the PNG plots (ROC, PR, robustness curves, training curves).
    pub plots: bool,
    /// Compute device (no autodiff needed).
    pub device: Device,
    /// Inference batch size; `None` uses the checkpoint's `evaluation.batch_size`.
    pub batch_size: Option<usize>,
    /// Decision threshold; `None` uses the checkpoint's `evaluation.threshold`.
    pub threshold: Option<f64>,
}

impl EvalOptions {
    /// Options with the defaults of `avfuse eval`: every modality set, the default
    /// corruption grid ([`default_corruptions`]), mean aggregation, seed 0, plots on, the
    /// checkpoint's batch size and threshold.
    pub fn new(checkpoint: PathBuf, split_dir: PathBuf, out_dir: PathBuf, device: Device) -> Self {
        Self {
            checkpoint,
            split_dir,
            out_dir,
            sets: ModalitySet::ALL.to_vec(),
            corruptions: default_corruptions(),
            aggregation: Aggregation::Mean,
            seed: 0,
            plots: true,
            device,
            batch_size: None,
            threshold: None,
        }
    }
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

/// Results under one modality set (clean inputs).
#[derive(Clone, Debug, Serialize)]
pub struct SetResult {
    /// Sample-level metrics: one score per cached clip.
    pub metrics: BinaryReport,
    /// Video-level metrics: clip scores aggregated per source video (see
    /// [`EvalReport::video_ids`]); kept apart from the sample level.
    pub video_level: VideoLevelReport,
    /// Breakdown by clip kind (from the manifest), sample level.
    pub per_kind: BTreeMap<String, KindStats>,
    /// Multi-class checkpoints (`dataset.classes`): accuracy, per-class and macro
    /// precision/recall/F1 and the confusion matrix of the arg-max class, sample level, in
    /// [`EvalReport::classes`] order. [`SetResult::metrics`] stays real vs fake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiclass: Option<MulticlassReport>,
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
    /// Clips (samples) evaluated.
    pub clips: usize,
    /// Distinct videos among them.
    pub videos: usize,
    /// How video ids were found: `source` (the manifest's `details.source`, set by `avfuse
    /// prepare`) or `clip_id` (each clip is its own video, as for synthetic data).
    pub video_ids: &'static str,
    /// Decision threshold used.
    pub threshold: f64,
    /// The checkpoint's class names in label order (`["real", "fake"]` for a binary model).
    pub classes: Vec<String>,
    /// Level of [`SetResult::metrics`]: `sample` (one cached clip).
    pub level: &'static str,
    /// Clean results keyed by modality set name (`both`, `video_only`, `audio_only`).
    pub results: BTreeMap<String, SetResult>,
    /// Every evaluated setting: clean rows (`corruption: none`) and one row per corruption
    /// level and modality set, sample level.
    pub robustness: Vec<RobustnessRow>,
    /// Files written, relative to the output directory.
    pub files: Vec<String>,
}

/// The video a clip belongs to: `details.source` when the manifest has it, else the clip id.
fn video_id(clip: &ManifestEntry) -> Option<&str> {
    clip.details
        .get("source")
        .and_then(serde_json::Value::as_str)
}

/// Evaluate a loaded checkpoint `ckpt` on a split, under every modality set and corruption
/// of `opts`. Writes into `out_dir`, each file atomically:
/// - `eval.json` ([`EvalReport`]);
/// - `predictions_samples.{csv,json}` and `predictions_videos.{csv,json}`: one row per clip
///   (video) and setting, columns `id, video_id, label, score, pred, modality_set,
///   corruption`;
/// - `robustness.{md,csv,json}`: the metrics of every setting;
/// - multi-class checkpoints: `predictions_classes.csv`, one row per clip and setting with
///   columns `id, modality_set, corruption, class, pred_class, p_<class>...`;
/// - with `plots`: `plots/roc.png`, `plots/pr.png` (one curve per modality set),
///   `plots/robustness_<kind>.png` (AUC against the level) and, when the checkpoint lies in
///   a run directory with a `metrics.jsonl`, `plots/training_curves.png`.
pub fn evaluate(ckpt: &Checkpoint, opts: &EvalOptions) -> Result<EvalReport> {
    if opts.sets.is_empty() {
        return Err(TrainError::Config("no modality set to evaluate".into()));
    }
    for c in &opts.corruptions {
        c.validate()?;
    }
    let ds =
        Dataset::load_with_classes(&opts.split_dir, ckpt.meta.config.dataset.classes.as_deref())?;
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
    let by_source = ds.data.clips.iter().all(|c| video_id(c).is_some());
    let video_ids: Vec<String> = ds
        .data
        .clips
        .iter()
        .map(|c| match video_id(c) {
            Some(v) if by_source => v.to_string(),
            _ => c.clip_id.clone(),
        })
        .collect();

    // Every setting: (modality set, corruption). Clean first, in `sets` order.
    let mut settings: Vec<(ModalitySet, Option<Corruption>)> =
        opts.sets.iter().map(|&s| (s, None)).collect();
    for c in &opts.corruptions {
        for &set in &opts.sets {
            if set.keeps(c.kind.modality()) {
                settings.push((set, Some(*c)));
            }
        }
    }
    let pb = ProgressBar::new(settings.len() as u64).with_style(
        ProgressStyle::with_template("eval {bar:30} {pos}/{len} settings {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if !tracing::enabled!(tracing::Level::INFO) {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }

    let mut results = BTreeMap::new();
    let mut robustness = Vec::new();
    let mut sample_out = Vec::new();
    let mut video_out = Vec::new();
    let mut clean_scores: Vec<(ModalitySet, Vec<f64>)> = Vec::new();
    let classes = &ckpt.meta.labels;
    let mut class_rows: Vec<Vec<String>> = Vec::new();
    for (set, corruption) in &settings {
        let label = corruption.map_or_else(|| "none".to_string(), |c| c.label());
        pb.set_message(format!("{} {label}", set.name()));
        let presence = ds.presence_for(*set);
        let preds = predict_corrupted(
            &model,
            &ds,
            &presence,
            &ckpt.meta.normalizer,
            batch_size,
            &opts.device,
            corruption.as_ref().map(|c| (c, opts.seed)),
        )?;
        let samples: Vec<SamplePrediction> = ds
            .data
            .clips
            .iter()
            .zip(&video_ids)
            .zip(&preds.probs)
            .map(|((clip, vid), &p)| SamplePrediction {
                id: clip.clip_id.clone(),
                video_id: vid.clone(),
                label: clip.label,
                score: p,
            })
            .collect();
        // Multi-class heads: the arg-max class per clip, for the class rows and the report.
        let class_preds = preds.multiclass_predictions()?;
        if let Some(preds_k) = &class_preds {
            let k = preds.num_classes;
            let name = |c: usize| classes.get(c).cloned().unwrap_or_else(|| c.to_string());
            for (i, clip) in ds.data.clips.iter().enumerate() {
                let mut row = vec![
                    clip.clip_id.clone(),
                    set.name().to_string(),
                    label.clone(),
                    name(usize::from(ds.targets[i])),
                    name(preds_k[i]),
                ];
                row.extend(
                    preds.class_probs[i * k..(i + 1) * k]
                        .iter()
                        .map(|p| p.to_string()),
                );
                class_rows.push(row);
            }
        }
        let levels = level_reports(&samples, opts.aggregation, threshold)?;
        let videos = aggregate_videos(&samples, opts.aggregation)?;
        sample_out.extend(sample_rows(&samples, threshold, set.name(), &label));
        video_out.extend(video_rows(&videos, threshold, set.name(), &label));
        robustness.push(RobustnessRow {
            modality_set: set.name().to_string(),
            corruption: corruption.map_or("none", |c| c.kind.name()).to_string(),
            level: corruption.map_or(0.0, |c| c.level),
            report: levels.sample_level.clone(),
        });
        match corruption {
            None => {
                info!(
                    set = set.name(),
                    auc = levels.sample_level.auc.unwrap_or(f64::NAN),
                    ap = levels.sample_level.ap.unwrap_or(f64::NAN),
                    accuracy = levels.sample_level.accuracy,
                    video_auc = levels.video_level.report.auc.unwrap_or(f64::NAN),
                    "evaluated {}",
                    ds.dir.display()
                );
                results.insert(
                    set.name().to_string(),
                    SetResult {
                        metrics: levels.sample_level,
                        video_level: levels.video_level,
                        per_kind: per_kind(&ds, &preds.probs, threshold),
                        multiclass: class_preds
                            .as_deref()
                            .map(|p| class_report(&ds.targets, p, preds.num_classes))
                            .transpose()?,
                    },
                );
                clean_scores.push((*set, preds.probs));
            }
            Some(c) => debug!(
                set = set.name(),
                corruption = %c.label(),
                auc = levels.sample_level.auc.unwrap_or(f64::NAN),
                "evaluated corruption"
            ),
        }
        pb.inc(1);
    }
    pb.finish_and_clear();

    let out = &opts.out_dir;
    let mut files = vec![
        "eval.json".to_string(),
        "predictions_samples.csv".into(),
        "predictions_samples.json".into(),
        "predictions_videos.csv".into(),
        "predictions_videos.json".into(),
        "robustness.md".into(),
        "robustness.csv".into(),
        "robustness.json".into(),
    ];
    write_predictions_csv(&out.join("predictions_samples.csv"), &sample_out)?;
    write_predictions_json(&out.join("predictions_samples.json"), &sample_out)?;
    write_predictions_csv(&out.join("predictions_videos.csv"), &video_out)?;
    write_predictions_json(&out.join("predictions_videos.json"), &video_out)?;
    write_robustness_markdown(&out.join("robustness.md"), &robustness)?;
    write_robustness_csv(&out.join("robustness.csv"), &robustness)?;
    write_robustness_json(&out.join("robustness.json"), &robustness)?;
    if !class_rows.is_empty() {
        let path = out.join("predictions_classes.csv");
        write_class_rows(&path, classes, &class_rows)?;
        files.push("predictions_classes.csv".into());
    }
    if opts.plots {
        files.extend(write_plots(
            out,
            &ds.data.labels,
            &clean_scores,
            &robustness,
            &opts.corruptions,
            &opts.checkpoint,
        )?);
    }

    let report = EvalReport {
        split_dir: ds.dir.display().to_string(),
        checkpoint: opts.checkpoint.display().to_string(),
        checkpoint_epoch: ckpt.meta.epoch,
        clips: ds.len(),
        videos: video_ids.iter().collect::<BTreeSet<_>>().len(),
        video_ids: if by_source { "source" } else { "clip_id" },
        threshold,
        classes: ckpt.meta.labels.clone(),
        level: "sample",
        results,
        robustness,
        files,
    };
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| TrainError::Config(format!("eval.json: {e}")))?;
    atomic_write(&out.join("eval.json"), &json)?;
    Ok(report)
}

/// `predictions_classes.csv` of a multi-class checkpoint: per clip and setting the true and
/// the arg-max class and every class probability (`p_<class>` columns, in label order).
fn write_class_rows(path: &Path, classes: &[String], rows: &[Vec<String>]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| TrainError::Config(format!("{}: {e}", path.display()));
    let mut header: Vec<String> = ["id", "modality_set", "corruption", "class", "pred_class"]
        .map(String::from)
        .to_vec();
    header.extend(classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header).map_err(csv_err)?;
    for r in rows {
        w.write_record(r).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| TrainError::Config(format!("{}: {}", path.display(), e.error())))?;
    atomic_write(path, &bytes)?;
    Ok(())
}

/// Per-kind statistics of one setting's scores.
fn per_kind(ds: &Dataset, probs: &[f64], threshold: f64) -> BTreeMap<String, KindStats> {
    let mut acc: BTreeMap<String, (usize, f64, usize)> = BTreeMap::new();
    for (clip, &p) in ds.data.clips.iter().zip(probs) {
        let e = acc.entry(clip.kind.clone()).or_default();
        e.0 += 1;
        e.1 += p;
        e.2 += usize::from(p >= threshold);
    }
    acc.into_iter()
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
        .collect()
}

/// The PNG plots of [`evaluate`]; returns the files written (relative to `out`). A plot whose
/// data is degenerate (a single class: no ROC) is skipped with a warning, not an error.
fn write_plots(
    out: &Path,
    labels: &[u8],
    clean: &[(ModalitySet, Vec<f64>)],
    rows: &[RobustnessRow],
    corruptions: &[Corruption],
    checkpoint: &Path,
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let mut save = |name: &str, png: avfuse_report::Result<Vec<u8>>| -> Result<()> {
        match png {
            Ok(bytes) => {
                let rel = format!("plots/{name}");
                write_atomic(&out.join(&rel), &bytes)?;
                files.push(rel);
            }
            Err(e) => warn!("plot {name} skipped: {e}"),
        }
        Ok(())
    };
    let roc: avfuse_report::Result<Vec<RocSeries>> = clean
        .iter()
        .map(|(s, p)| RocSeries::from_scores(s.name(), labels, p))
        .collect();
    save(
        "roc.png",
        roc.and_then(|r| plot_roc(&r, &PlotOptions::new(800, 700, "ROC (sample level)"))),
    )?;
    let pr: avfuse_report::Result<Vec<PrSeries>> = clean
        .iter()
        .map(|(s, p)| PrSeries::from_scores(s.name(), labels, p))
        .collect();
    save(
        "pr.png",
        pr.and_then(|r| {
            plot_pr(
                &r,
                &PlotOptions::new(800, 700, "Precision-recall (sample level)"),
            )
        }),
    )?;
    for kind in CorruptionKind::ALL {
        if corruptions.iter().any(|c| c.kind == kind) {
            let title = format!("Robustness: AUC against {}", kind.unit());
            save(
                &format!("robustness_{}.png", kind.name()),
                plot_robustness(
                    rows,
                    kind.name(),
                    kind.clean_level(),
                    RobustnessMetric::Auc,
                    &PlotOptions::new(800, 600, title),
                ),
            )?;
        }
    }
    // A checkpoint at RUN/checkpoints/x.avfc: the run's metrics.jsonl is RUN/metrics.jsonl.
    let metrics = checkpoint
        .parent()
        .and_then(Path::parent)
        .map(|run| run.join(crate::trainer::files::METRICS));
    if let Some(path) = metrics.filter(|p| p.is_file()) {
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        let panels = [
            ("loss", vec!["train_loss", "val_loss"]),
            ("validation", vec!["val_auc", "val_ap", "val_accuracy"]),
            ("learning rate", vec!["lr"]),
        ];
        let mut built = Vec::new();
        for (name, keys) in panels {
            let series = training_series_from_jsonl(&text, "epoch", &keys)?;
            built.push((name.to_string(), series));
        }
        save(
            "training_curves.png",
            plot_training_curves(
                &built,
                "epoch",
                &PlotOptions::new(900, 900, "Training curves"),
            ),
        )?;
    }
    Ok(files)
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
    let multi: Vec<_> = ModalitySet::ALL
        .into_iter()
        .filter_map(|set| {
            let m = report.results.get(set.name())?.multiclass.as_ref()?;
            Some((set, m))
        })
        .collect();
    if !multi.is_empty() {
        let _ = writeln!(
            s,
            "\n{} classes ({}): multi-class accuracy and macro F1\nmodalities     acc     macro-F1",
            report.classes.len(),
            report.classes.join(", ")
        );
        for (set, m) in multi {
            let _ = writeln!(
                s,
                "{:<12} {:>7.4} {:>8.4}",
                set.name(),
                m.accuracy,
                m.macro_f1
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
