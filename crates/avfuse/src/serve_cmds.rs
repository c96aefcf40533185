//! `avfuse predict` and `avfuse serve`: a checkpoint applied to video files, offline (JSON
//! Lines) or as an HTTP service. Decoding needs the `ffmpeg` feature; without it both
//! commands stop at once with one line saying how to get it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use avfuse_media::io::atomic_write;
use avfuse_serve::batch::{list_inputs, predict_paths};
use avfuse_serve::{EngineOptions, FFMPEG, Inference, MediaLimits, ServeConfig};
use avfuse_train::DeviceSpec;
use clap::Args;

/// Model flags shared by `predict` and `serve`.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Checkpoint file (e.g. RUN/checkpoints/best.avfc).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// The `prepare.json` of the training data (written by `avfuse prepare` into each split
    /// directory): preprocess exactly as it did. Default: `avfuse prepare`'s defaults fitted
    /// to the checkpoint's layout.
    #[arg(long, value_name = "FILE")]
    pub preprocessing: Option<PathBuf>,
    /// Decision threshold on the fake probability (default: the checkpoint's
    /// evaluation.threshold).
    #[arg(long, value_name = "P")]
    pub threshold: Option<f64>,
    /// Compute device: `cpu` (Burn's pure-Rust backend) or `cuda` / `cuda:N` (needs a build
    /// with `--features cuda`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
}

/// `avfuse predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A video file, or a directory: every video file under it (by extension: mp4, mov,
    /// mkv, avi, webm, ...), in parallel.
    #[arg(value_name = "FILE|DIR")]
    pub input: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Write the JSON lines here (atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Longest clip to accept, seconds; longer files get an error line.
    #[arg(long, default_value_t = MediaLimits::default().max_duration_s, value_name = "S")]
    pub max_duration_s: f64,
    /// Hide the progress bar (drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// `avfuse serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// YAML file whose `serve` section sets the options below (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, value_name = "IP:PORT")]
    pub addr: Option<String>,
    /// Allow `{"path": ...}` requests for files inside this directory only.
    #[arg(long, value_name = "DIR")]
    pub allow_dir: Option<PathBuf>,
    /// Largest upload in bytes (413 beyond; default 100 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_upload_bytes: Option<u64>,
    /// Longest clip, seconds (422 beyond; default 120).
    #[arg(long, value_name = "S")]
    pub max_duration_s: Option<f64>,
    /// Largest frame, width x height in pixels (422 beyond, from the stream header; default
    /// 4096 x 2160).
    #[arg(long, value_name = "PIXELS")]
    pub max_frame_pixels: Option<u64>,
    /// Time limit of a whole prediction request, seconds (504 beyond; default 60).
    #[arg(long, value_name = "S")]
    pub request_timeout_s: Option<f64>,
    /// Inferences at once (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Requests that may wait for a worker (503 + Retry-After beyond; default 64).
    #[arg(long, value_name = "N")]
    pub queue_depth: Option<usize>,
    /// Directory for uploads in progress (default: a fresh one in the OS temp dir).
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
}

fn engine(m: &ModelArgs) -> Result<Inference> {
    let device: DeviceSpec = m.device.parse()?;
    let opts = EngineOptions {
        device,
        preprocessing: m.preprocessing.clone(),
        threshold: m.threshold,
        ..EngineOptions::default()
    };
    Inference::load(&m.checkpoint, &opts)
        .with_context(|| format!("loading {}", m.checkpoint.display()))
}

/// `avfuse predict`: one JSON line per file (failures included), then a summary on stderr.
pub fn predict(a: PredictArgs) -> Result<()> {
    if !FFMPEG {
        bail!(avfuse_serve::error::NO_FFMPEG);
    }
    crate::commands::init_logging_level("warn");
    let limits = MediaLimits {
        max_duration_s: a.max_duration_s,
        ..MediaLimits::default()
    };
    limits.validate()?;
    let files = list_inputs(&a.input)?;
    if files.is_empty() {
        bail!("{}: no video files in it", a.input.display());
    }
    let engine = engine(&a.model)?;
    let report = predict_paths(&engine, &files, &limits, !a.no_progress);
    let text = report.to_jsonl();
    match &a.out {
        Some(out) => {
            atomic_write(out, text.as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "predicted {} file(s), {} failed: {}",
                report.ok,
                report.failed,
                out.display()
            );
        }
        None => {
            print!("{text}");
            eprintln!("predicted {} file(s), {} failed", report.ok, report.failed);
        }
    }
    Ok(())
}

/// `avfuse serve`: runs until Ctrl-C or SIGTERM, finishing in-flight requests.
pub fn serve(a: ServeArgs) -> Result<()> {
    if !FFMPEG {
        bail!(avfuse_serve::error::NO_FFMPEG);
    }
    crate::commands::init_logging_level("info");
    let mut cfg = match &a.config {
        Some(f) => ServeConfig::from_file(f)?,
        None => ServeConfig::default(),
    };
    if let Some(v) = a.addr {
        cfg.addr = v;
    }
    if let Some(v) = a.allow_dir {
        cfg.allow_dir = Some(v);
    }
    if let Some(v) = a.max_upload_bytes {
        cfg.max_upload_bytes = v;
    }
    if let Some(v) = a.max_duration_s {
        cfg.max_duration_s = v;
    }
    if let Some(v) = a.max_frame_pixels {
        cfg.max_frame_pixels = v;
    }
    if let Some(v) = a.request_timeout_s {
        cfg.request_timeout_s = v;
    }
    if let Some(v) = a.workers {
        cfg.workers = v;
    }
    if let Some(v) = a.queue_depth {
        cfg.queue_depth = v;
    }
    if let Some(v) = a.temp_dir {
        cfg.temp_dir = Some(v);
    }
    cfg.validate()?;
    let engine = Arc::new(engine(&a.model)?);
    avfuse_serve::server::run_until_signal(cfg, engine)?;
    Ok(())
}
