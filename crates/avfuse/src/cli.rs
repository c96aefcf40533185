//! Command-line definitions (clap derive). Every flag documents itself in `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Train, evaluate and serve robust audio-visual (deepfake) classifiers.
///
/// Start with `avfuse quickstart --out runs/quickstart`: it makes synthetic audio-visual
/// data, trains a detector on the CPU, evaluates it with both modalities and with each alone,
/// and writes a report.
#[derive(Debug, Parser)]
#[command(name = "avfuse", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Synthetic data -> train -> evaluate (both / video only / audio only) -> report.json.
    Quickstart(QuickstartArgs),
    /// Write a synthetic audio-visual deepfake dataset (train/val/test splits) in the
    /// pre-extracted cache format.
    Synth(SynthArgs),
    /// Train a model on pre-extracted data.
    Train(TrainArgs),
    /// Evaluate a checkpoint on a split: metrics JSON, per-clip CSV, robustness table.
    Eval(EvalArgs),
    /// Decode real videos (DIR/<split>/<clip_id>/{video.mp4, meta.json} or a manifest),
    /// crop faces, compute log-mel and write the training cache. Resumable; needs a build
    /// with `--features ffmpeg`.
    Prepare(PrepareArgs),
    /// Report leading silence by label (a known shortcut of public deepfake sets: fakes
    /// start with silence). Needs a build with `--features ffmpeg`.
    CheckShortcuts(CheckShortcutsArgs),
    /// Check what a GPU run needs on this machine (driver, libcuda, libnvrtc, CUDA headers,
    /// NCCL, the kernel cache) and print what is missing.
    Doctor(DoctorArgs),
    /// Benchmarks on real data (`bench av-digits`: MNIST x FSDD, with a PyTorch baseline).
    Bench(crate::av_digits_cmd::BenchArgs),
    /// Predict on video files with a checkpoint: one JSON line per file (fake probability,
    /// label, each modality alone, per-window probabilities); a directory in parallel.
    /// Needs a build with `--features ffmpeg`.
    Predict(crate::serve_cmds::PredictArgs),
    /// Serve a checkpoint over HTTP: POST /v1/predict, GET /healthz, /v1/model,
    /// /openapi.json. Needs a build with `--features ffmpeg`.
    Serve(crate::serve_cmds::ServeArgs),
}

/// Configuration flags shared by the commands that read a config.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// YAML configuration file (see configs/quickstart.yaml for every key). Defaults apply
    /// to keys it leaves out.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one config key, e.g. `--set training.lr=3e-4`; repeatable, applied after
    /// the file, in order.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Device flag.
#[derive(Debug, Args, Clone)]
pub struct DeviceArgs {
    /// Compute device: `cpu` (Burn's pure-Rust backend, all cores), or `cuda` / `cuda:N`
    /// (GPU N; needs a build with `--features cuda`).
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Hide progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// `avfuse quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Output directory: data/, run/, eval/ and report.json go here.
    #[arg(long, default_value = "runs/quickstart", value_name = "DIR")]
    pub out: PathBuf,
    /// Replace the results of an earlier quickstart in the same directory.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `avfuse synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output directory; splits go to DIR/train, DIR/val, DIR/test.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Total number of clips, split 70/15/15 into train/val/test (by default the
    /// per-split counts of `dataset.synth` in the config).
    #[arg(long, value_name = "N")]
    pub clips: Option<usize>,
    /// Dataset seed; the same seed writes byte-identical files (default `dataset.synth.seed`).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Replace existing splits in DIR.
    #[arg(long)]
    pub force: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `avfuse train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Data directory holding the splits named by `dataset.train_split` and
    /// `dataset.val_split` (default: `dataset.root` from the config).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Run directory: config.yaml, metrics.jsonl and checkpoints/{last,best}.avfc.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the run in --out from checkpoints/last.avfc. Without --config the run's
    /// own config.yaml is used; --set may change training.epochs and
    /// training.early_stopping.patience.
    #[arg(long)]
    pub resume: bool,
    /// Stop after N epochs of this invocation (for time-limited cluster jobs); continue later
    /// with --resume. The learning-rate schedule spans the whole run, so results are the
    /// same as without stopping.
    #[arg(long, value_name = "N")]
    pub stop_after_epochs: Option<usize>,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `avfuse eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint file (e.g. RUN/checkpoints/best.avfc).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Data directory holding the split (default: `dataset.root` of the checkpoint's config).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Split to evaluate (a directory under --data).
    #[arg(long, default_value = "test", value_name = "NAME")]
    pub split: String,
    /// Output directory for eval.json, prediction files, robustness tables and plots/ (default:
    /// <checkpoint dir>/../eval-<split>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Comma-separated modality sets to evaluate: both, video_only, audio_only.
    #[arg(
        long,
        default_value = "both,video_only,audio_only",
        value_name = "SETS"
    )]
    pub modalities: String,
    /// Test-time corruptions of the robustness report: `default` (pixel noise 0.05,0.1,0.2;
    /// blur 1,2,3 px; JPEG quality 75,40,15; audio SNR 20,10,0 dB), `none`, or groups like
    /// `noise:0.1,0.2;blur:2;jpeg:50;audio_snr:10,0`.
    #[arg(long, default_value = "default", value_name = "GRID")]
    pub corruptions: String,
    /// How clip scores of one video are combined for the video-level metrics.
    #[arg(long, value_enum, default_value_t = AggregationArg::Mean)]
    pub aggregation: AggregationArg,
    /// Softmax temperature of `--aggregation attention` (in probability units, > 0).
    #[arg(long, default_value_t = 0.1, value_name = "T")]
    pub temperature: f64,
    /// Seed of the corruption noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Do not draw the PNG plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Inference batch size (default: the checkpoint's evaluation.batch_size).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Decision threshold on the fake probability (default: evaluation.threshold).
    #[arg(long, value_name = "P")]
    pub threshold: Option<f64>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// Video-level aggregation of clip scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AggregationArg {
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
    /// Softmax-weighted mean, weights softmax(p / temperature).
    Attention,
}

/// Frame sampling of `avfuse prepare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SamplingArg {
    /// Consecutive frames (every `--stride`-th) from `--start` seconds.
    Start,
    /// `--frames` frames evenly spread over the whole clip.
    Uniform,
    /// One random frame in each of `--frames` equal segments (seeded by `--seed`).
    Random,
}

/// `avfuse prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// Dataset: a directory `DIR/<split>/<clip_id>/{video.mp4, meta.json}` (meta.json holds
    /// at least `{"label": 0|1}`) or a manifest file (JSONL or CSV with split, clip_id,
    /// video, label). Not needed with --merge.
    #[arg(long, value_name = "DIR|FILE", required_unless_present = "merge")]
    pub data_root: Option<std::path::PathBuf>,
    /// Cache directory (one sub-directory per split; the format `avfuse train --data` reads).
    #[arg(long, value_name = "CACHE")]
    pub out: std::path::PathBuf,
    /// Process only part i of N (0-based), for cluster schedulers; parts go to
    /// CACHE/part-i-of-N/ and `--merge N` joins them.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<String>,
    /// Join the N finished parts of a sharded run into CACHE/<split>/ and exit.
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub merge: Option<usize>,
    /// Only these splits (comma-separated; default all).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub splits: Option<Vec<String>>,
    /// Frames per clip.
    #[arg(long, default_value_t = 32, value_name = "T")]
    pub frames: usize,
    /// How frames are chosen.
    #[arg(long, value_enum, default_value = "start")]
    pub sampling: SamplingArg,
    /// `start` sampling: time of the first frame, seconds.
    #[arg(long, default_value_t = 0.0, value_name = "S")]
    pub start: f64,
    /// `start` sampling: take every k-th frame.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub stride: usize,
    /// `random` sampling: seed (mixed with each clip id).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Nominal frame rate (frames per second) stored in the index; sizes the audio window
    /// (T * stride / fps seconds).
    #[arg(long, default_value_t = 25.0, value_name = "FPS")]
    pub fps: f32,
    /// Face crop side, pixels (square, margin 1.3 around the detected face).
    #[arg(long, default_value_t = 224, value_name = "PX")]
    pub crop_size: usize,
    /// Run the face detector on every k-th frame and track/interpolate in between.
    #[arg(long, default_value_t = 4, value_name = "K")]
    pub detect_every: usize,
    /// Decode frames scaled so the longer side is at most this (default: native size).
    #[arg(long, value_name = "PX")]
    pub max_side: Option<u32>,
    /// Clips per shard file.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub shard_size: usize,
    /// Start every clip after its leading silence (threshold in dB below the clip's loudest
    /// 25 ms window, e.g. 40), shifting video and audio alike.
    #[arg(long, value_name = "DB")]
    pub trim_leading_silence: Option<f32>,
    /// Retry clips that failed in an earlier run.
    #[arg(long)]
    pub retry_failed: bool,
    /// Keep the per-clip work files after a split is complete.
    #[arg(long)]
    pub keep_work: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// `avfuse check-shortcuts`.
#[derive(Debug, Args)]
pub struct CheckShortcutsArgs {
    /// Dataset directory or manifest (as for `prepare`).
    #[arg(long, value_name = "DIR|FILE")]
    pub data_root: std::path::PathBuf,
    /// Silence threshold: dB below the clip's loudest 25 ms window (librosa's `top_db`).
    #[arg(long, default_value_t = 40.0, value_name = "DB")]
    pub threshold_db: f32,
    /// Warn when fakes and reals differ by at least this many seconds on average.
    #[arg(long, default_value_t = 0.1, value_name = "S")]
    pub warn_gap_s: f64,
    /// Also write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

/// `avfuse doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Exit with an error when anything a `--device cuda` run needs is missing.
    #[arg(long)]
    pub gpu: bool,
}
