//! The subcommands. Library errors are wrapped with anyhow context here, in the binary only.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use avfuse_media::io::atomic_write;
use avfuse_media::synth::{SynthConfig as MediaSynthConfig, synth_split};
use avfuse_metrics::Aggregation;
use avfuse_train::checkpoint::Checkpoint;
use avfuse_train::config::{Config, LogLevel};
use avfuse_train::corrupt::parse_corruptions;
use avfuse_train::data::ModalitySet;
use avfuse_train::eval::{EvalOptions, EvalReport, best_checkpoint, robustness_table};
use avfuse_train::trainer::{ensure_writable_dir, files};
use avfuse_train::{DeviceSpec, TrainOptions, evaluate, train};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tracing::info;
use tracing_subscriber::EnvFilter;

use crate::cli::{
    AggregationArg, Cli, Command, DeviceArgs, EvalArgs, QuickstartArgs, SynthArgs, TrainArgs,
};

/// Run one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Quickstart(a) => quickstart(a),
        Command::Synth(a) => synth(a),
        Command::Train(a) => train_cmd(a),
        Command::Eval(a) => eval_cmd(a),
        Command::Prepare(a) => crate::media_cmds::prepare(a),
        Command::CheckShortcuts(a) => crate::media_cmds::check_shortcuts(a),
        Command::Doctor(a) => crate::doctor::run(a),
        Command::Bench(a) => crate::av_digits_cmd::run(a),
        Command::Predict(a) => crate::serve_cmds::predict(a),
        Command::Serve(a) => crate::serve_cmds::serve(a),
    }
}

fn init_logging(level: LogLevel) {
    init_logging_level(level.as_str());
}

/// Log to stderr at `level` unless `RUST_LOG` says otherwise.
pub(crate) fn init_logging_level(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // A second init (never happens in one process) would only be ignored.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn device(args: &DeviceArgs) -> Result<Device> {
    let spec: DeviceSpec = args.device.parse()?;
    Ok(spec.device()?)
}

/// Split a total clip count 70/15/15 into train/val/test.
fn split_counts(total: usize) -> Result<[usize; 3]> {
    let train = (total as f64 * 0.70).round() as usize;
    let val = (total as f64 * 0.15).round() as usize;
    let test = total.saturating_sub(train + val);
    if train == 0 || val == 0 || test == 0 {
        bail!(
            "--clips {total}: too few to split 70/15/15 into non-empty train/val/test (use at least 10)"
        );
    }
    Ok([train, val, test])
}

/// Write the three synthetic splits of `cfg` into `out` with `counts` clips.
fn write_synth(
    cfg: &Config,
    out: &Path,
    counts: [usize; 3],
    seed: u64,
    force: bool,
    progress: bool,
) -> Result<()> {
    let s = &cfg.dataset.synth;
    let splits = [
        &cfg.dataset.train_split,
        &cfg.dataset.val_split,
        &cfg.dataset.test_split,
    ];
    for split in splits {
        let dir = out.join(split);
        if dir.join("index.json").exists() || dir.join("manifest.jsonl").exists() {
            if !force {
                bail!(
                    "{} already holds a dataset split; pass --force to replace it",
                    dir.display()
                );
            }
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    ensure_writable_dir(out)?;
    let media_cfg = MediaSynthConfig {
        frames: s.frames,
        image_size: s.image_size,
        fake_fraction: s.fake_fraction,
        ..MediaSynthConfig::default()
    };
    let total: usize = counts.iter().sum();
    let pb = ProgressBar::with_draw_target(
        Some(total as u64),
        if progress && cfg.logging.progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("synth [{bar:30}] {pos}/{len} clips ({per_sec}, eta {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    let started = Instant::now();
    for (split, n) in splits.into_iter().zip(counts) {
        let summary = synth_split(&media_cfg, out, split, n, seed, s.shard_size, &|k| {
            pb.inc(k)
        })?;
        info!(split = %summary.split, clips = summary.clips, bytes = summary.bytes, kinds = ?summary.per_kind, "wrote split");
    }
    pb.finish_and_clear();
    info!(
        clips = total,
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "synthetic dataset written to {}",
        out.display()
    );
    Ok(())
}

fn synth(a: SynthArgs) -> Result<()> {
    let cfg = Config::load(a.config.config.as_deref(), &a.config.set)?;
    init_logging(cfg.logging.level);
    let s = &cfg.dataset.synth;
    let counts = match a.clips {
        Some(n) => split_counts(n)?,
        None => [s.train_clips, s.val_clips, s.test_clips],
    };
    write_synth(
        &cfg,
        &a.out,
        counts,
        a.seed.unwrap_or(s.seed),
        a.force,
        !a.no_progress,
    )
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let config_file = match (&a.config.config, a.resume) {
        (Some(f), _) => Some(f.clone()),
        (None, true) => Some(a.out.join(files::CONFIG)),
        (None, false) => None,
    };
    if let Some(f) = &config_file
        && a.resume
        && !f.exists()
    {
        bail!(
            "--resume: {} does not exist; is {} a run directory?",
            f.display(),
            a.out.display()
        );
    }
    let cfg = Config::load(config_file.as_deref(), &a.config.set)?;
    init_logging(cfg.logging.level);
    let device = device(&a.device)?;
    let opts = TrainOptions {
        data_root: a.data.clone().unwrap_or_else(|| cfg.dataset.root.clone()),
        out_dir: a.out.clone(),
        resume: a.resume,
        device,
        progress: !a.device.no_progress,
        stop_after_epochs: a.stop_after_epochs,
    };
    let outcome = train(&cfg, &opts)?;
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(())
}

fn parse_sets(s: &str) -> Result<Vec<ModalitySet>> {
    s.split(',')
        .map(|x| {
            ModalitySet::parse(x.trim()).with_context(|| {
                format!("--modalities: unknown set {x:?} (expected both, video_only, audio_only)")
            })
        })
        .collect()
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    init_logging(LogLevel::Info);
    let sets = parse_sets(&a.modalities)?;
    let device = device(&a.device)?;
    let ckpt = Checkpoint::load(&a.checkpoint)?;
    let data = a
        .data
        .clone()
        .unwrap_or_else(|| ckpt.meta.config.dataset.root.clone());
    let out = a.out.clone().unwrap_or_else(|| {
        a.checkpoint
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."))
            .join(format!("eval-{}", a.split))
    });
    let mut opts = EvalOptions::new(
        a.checkpoint.clone(),
        data.join(&a.split),
        out.clone(),
        device,
    );
    opts.sets = sets;
    opts.corruptions = parse_corruptions(&a.corruptions)?;
    opts.aggregation = match a.aggregation {
        AggregationArg::Mean => Aggregation::Mean,
        AggregationArg::Max => Aggregation::Max,
        AggregationArg::Attention => Aggregation::Attention {
            temperature: a.temperature,
        },
    };
    opts.seed = a.seed;
    opts.plots = !a.no_plots;
    opts.batch_size = a.batch_size;
    opts.threshold = a.threshold;
    let report = evaluate(&ckpt, &opts)?;
    print!("{}", robustness_table(&report));
    for f in &report.files {
        println!("wrote {}", out.join(f).display());
    }
    Ok(())
}

fn metrics_summary(report: &EvalReport, set: ModalitySet) -> serde_json::Value {
    match report.results.get(set.name()) {
        Some(r) => json!({
            "auc": r.metrics.auc,
            "ap": r.metrics.ap,
            "accuracy": r.metrics.accuracy,
            "f1": r.metrics.f1,
        }),
        None => serde_json::Value::Null,
    }
}

fn quickstart(a: QuickstartArgs) -> Result<()> {
    let started = Instant::now();
    let cfg = Config::load(a.config.config.as_deref(), &a.config.set)?;
    init_logging(cfg.logging.level);
    let device = device(&a.device)?;
    let out = a.out.clone();
    let (data, run, eval_dir) = (out.join("data"), out.join("run"), out.join("eval"));
    let report_path = out.join("report.json");
    let splits = [
        &cfg.dataset.train_split,
        &cfg.dataset.val_split,
        &cfg.dataset.test_split,
    ];
    let earlier = run.exists()
        || report_path.exists()
        || splits
            .iter()
            .any(|s| data.join(s).join("index.json").exists());
    if earlier {
        if !a.force {
            bail!(
                "{} holds an earlier quickstart (or data); pass --force to replace it or choose another --out",
                out.display()
            );
        }
        for d in [&run, &eval_dir] {
            if d.exists() {
                std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
            }
        }
    }
    ensure_writable_dir(&out)?;
    let progress = !a.device.no_progress;

    let s = &cfg.dataset.synth;
    info!("1/3 synthetic data -> {}", data.display());
    write_synth(
        &cfg,
        &data,
        [s.train_clips, s.val_clips, s.test_clips],
        s.seed,
        a.force,
        progress,
    )?;

    info!("2/3 training -> {}", run.display());
    let outcome = train(
        &cfg,
        &TrainOptions {
            data_root: data.clone(),
            out_dir: run.clone(),
            resume: false,
            device: device.clone(),
            progress,
            stop_after_epochs: None,
        },
    )?;

    info!(
        "3/3 evaluating the best checkpoint on {}",
        cfg.dataset.test_split
    );
    let ckpt_path = best_checkpoint(&run);
    let ckpt = Checkpoint::load(&ckpt_path)?;
    let report = evaluate(
        &ckpt,
        &EvalOptions::new(
            ckpt_path.clone(),
            data.join(&cfg.dataset.test_split),
            eval_dir.clone(),
            device,
        ),
    )?;

    let both = report
        .results
        .get(ModalitySet::Both.name())
        .map(|r| &r.metrics);
    let summary = json!({
        "test": both,
        "robustness": {
            "both": metrics_summary(&report, ModalitySet::Both),
            "video_only": metrics_summary(&report, ModalitySet::VideoOnly),
            "audio_only": metrics_summary(&report, ModalitySet::AudioOnly),
        },
        "per_kind": report.results.get(ModalitySet::Both.name()).map(|r| &r.per_kind),
        "train_seconds": outcome.train_seconds,
        "total_seconds": started.elapsed().as_secs_f64(),
        "epochs": outcome.epochs_completed,
        "best_epoch": outcome.best_epoch,
        "stopped_early": outcome.stopped_early,
        "selection_metric": outcome.metric,
        "device": a.device.device,
        "clips": { "train": s.train_clips, "val": s.val_clips, "test": s.test_clips },
        "checkpoint": ckpt_path,
        "avfuse_version": env!("CARGO_PKG_VERSION"),
    });
    atomic_write(&report_path, &serde_json::to_vec_pretty(&summary)?)?;

    println!(
        "\navfuse quickstart: test split, {} clips, best epoch {}",
        report.clips, outcome.best_epoch
    );
    print!("{}", robustness_table(&report));
    println!(
        "train {:.1}s, total {:.1}s",
        outcome.train_seconds,
        started.elapsed().as_secs_f64()
    );
    println!("report: {}", report_path.display());
    Ok(())
}
