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
    /// Output directory for eval.json and predictions_<set>.csv (default:
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
    /// Inference batch size (default: the checkpoint's evaluation.batch_size).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Decision threshold on the fake probability (default: evaluation.threshold).
    #[arg(long, value_name = "P")]
    pub threshold: Option<f64>,
    #[command(flatten)]
    pub device: DeviceArgs,
}
