//! `avfuse bench av-digits`: the AV digits benchmark (MNIST test images + FSDD spoken
//! digits, issue 8) with its PyTorch baseline run side by side.
//!
//! Builds the paired, degraded data set ([`avfuse_media::av_digits`]), trains the four
//! variants ([`avfuse_train::av_digits`]), evaluates them on the test split with both /
//! image-only / audio-only inputs, exports the exact data, initial weights and batch plans
//! and runs `bench/av_digits/torch_baseline.py` on them for variants (c) and (d), and writes
//! `bench/results/av_digits.json` with rows `{model, test_inputs, avfuse_acc, torch_acc}`.
//! When the data is absent it prints why and exits successfully without doing anything.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use avfuse_media::av_digits::{
    AvDigits, AvDigitsConfig, AvDigitsPaths, AvDigitsSplit, Degradation, load,
};
use avfuse_media::io::atomic_write;
use avfuse_train::DeviceSpec;
use avfuse_train::av_digits::{
    DigitsNetConfig, TestInputs, TrainConfig, Trained, Variant, accuracy, train_variant,
    write_export,
};
use burn::tensor::Device;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

/// `avfuse bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub bench: BenchCommand,
}

/// Benchmarks of the binary.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// AV digits: MNIST images paired with FSDD spoken digits, each modality degraded;
    /// trains (a) image only, (b) audio only, (c) fusion, (d) fusion with modality dropout,
    /// reports accuracy with both / image-only / audio-only test inputs next to a PyTorch
    /// baseline of (c) and (d) trained on the identical data, weights and batches.
    AvDigits(AvDigitsArgs),
}

/// `avfuse bench av-digits`.
#[derive(Debug, Args)]
pub struct AvDigitsArgs {
    /// Data root holding `mnist/t10k-*-ubyte.gz` and `fsdd/recordings/*.wav`. When they are
    /// missing the benchmark is skipped with a message (exit status 0).
    #[arg(long, default_value = "../shared/data", value_name = "DIR")]
    pub data: PathBuf,
    /// Result file (JSON).
    #[arg(
        long,
        default_value = "bench/results/av_digits.json",
        value_name = "FILE"
    )]
    pub out: PathBuf,
    /// Training epochs of every variant (avfuse and PyTorch alike). 32: at 16 the fusion
    /// model with modality dropout was still 3.3 points short of the image-only model with
    /// images alone (it sees each modality alone on part of the samples only); at 32 every
    /// variant has converged.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub epochs: usize,
    /// Seed of the data build, the initial weights, the batch order and the masks.
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch_size: usize,
    /// Peak learning rate (linear warm-up over half an epoch, then cosine to 0).
    #[arg(long, default_value_t = 2e-3, value_name = "LR")]
    pub lr: f64,
    /// Modality dropout probabilities to try for variant (d), comma-separated; the one with
    /// the best mean validation accuracy over both / image-only / audio-only inputs is kept
    /// (the test split is never used to choose).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.5,0.7",
        value_name = "P,..."
    )]
    pub p_grid: Vec<f64>,
    /// Side in pixels of the square occlusion set to 0 in each image.
    #[arg(long, default_value_t = Degradation::default().occlusion_side, value_name = "PX")]
    pub occlusion: usize,
    /// Standard deviation of the Gaussian noise added to the [0, 1] pixels.
    #[arg(long, default_value_t = Degradation::default().image_noise_std, value_name = "STD")]
    pub image_noise: f32,
    /// SNR in dB of the white noise mixed into the audio (relative to the speech power).
    #[arg(long, default_value_t = Degradation::default().snr_db, value_name = "DB", allow_hyphen_values = true)]
    pub snr_db: f32,
    /// Variants to train (letters a-d), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "a,b,c,d",
        value_name = "V,..."
    )]
    pub variants: Vec<String>,
    /// Only write the export the PyTorch baseline reads (data, initial weights, batch plans
    /// of (c) and (d), with the first value of --p-grid) to DIR/av_digits_export.safetensors
    /// and exit.
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Do not run the PyTorch baseline (torch_acc is then null).
    #[arg(long)]
    pub no_torch: bool,
    /// Threads of the PyTorch baseline (default: all logical CPUs).
    #[arg(long, value_name = "N")]
    pub torch_threads: Option<usize>,
    /// Compute device: `cpu`, or `cuda` / `cuda:N` in a build with `--features cuda`.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Hide progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// Run `avfuse bench ...`.
pub fn run(a: BenchArgs) -> Result<()> {
    match a.bench {
        BenchCommand::AvDigits(a) => av_digits(a),
    }
}

/// The location of the baseline script relative to the repository root.
const SCRIPT: &str = "bench/av_digits/torch_baseline.py";
/// File name of the export inside `--export DIR` (and the temporary directory).
const EXPORT_FILE: &str = "av_digits_export.safetensors";

/// The repository root: the current directory when it holds the script, else the one this
/// binary was built from.
fn repo_root() -> PathBuf {
    if Path::new(SCRIPT).is_file() {
        PathBuf::from(".")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }
}

/// A Python with torch: `$AVFUSE_TORCH_PYTHON`, else `.venv-torch/bin/python` in the
/// repository root, else none.
fn torch_python(root: &Path) -> Option<PathBuf> {
    if let Ok(p) = std::env::var("AVFUSE_TORCH_PYTHON") {
        return Some(p.into());
    }
    let venv = root.join(".venv-torch/bin/python");
    venv.exists().then_some(venv)
}

fn bar(len: u64, enabled: bool, prefix: String) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(len),
        if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>28} [{bar:30}] {pos}/{len} samples {msg} ({elapsed}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(prefix);
    pb
}

fn spinner(enabled: bool, msg: &'static str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        None,
        if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    pb.set_message(msg);
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

/// Accuracies of one trained model on one split, keyed by test-input name.
fn accuracies(
    t: &Trained,
    split: &AvDigitsSplit,
    cfg: &TrainConfig,
    device: &Device,
) -> Result<serde_json::Map<String, Value>> {
    let mut m = serde_json::Map::new();
    for &inputs in t.variant.test_inputs() {
        let acc = accuracy(
            &t.model,
            t.variant,
            split,
            inputs,
            cfg.eval_batch_size,
            device,
        )?;
        m.insert(inputs.name().into(), json!(acc));
    }
    Ok(m)
}

fn mean_of(m: &serde_json::Map<String, Value>) -> f64 {
    let v: Vec<f64> = m.values().filter_map(Value::as_f64).collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

struct Done {
    trained: Trained,
    val: serde_json::Map<String, Value>,
    test: serde_json::Map<String, Value>,
    p: Option<f64>,
}

fn train_one(
    data: &AvDigits,
    variant: Variant,
    net: &DigitsNetConfig,
    cfg: &TrainConfig,
    device: &Device,
    progress: bool,
) -> Result<Done> {
    let n = data.train.len();
    let label = match variant {
        Variant::FusionDropout => format!("({}) p={}", variant.name(), cfg.modality_dropout_p),
        _ => format!("({})", variant.name()),
    };
    let pb = bar((n * cfg.epochs) as u64, progress, label);
    let trained = train_variant(&data.train, variant, net, cfg, device, &mut |s| {
        pb.set_position(((s.epoch - 1) * s.samples + s.samples_done) as u64);
        pb.set_message(format!("epoch {}/{} loss {:.3}", s.epoch, s.epochs, s.loss));
    })
    .with_context(|| format!("training {}", variant.name()))?;
    pb.finish_and_clear();
    let val = accuracies(&trained, &data.val, cfg, device)?;
    let test = accuracies(&trained, &data.test, cfg, device)?;
    eprintln!(
        "{:<28} trained in {:>6.1} s; val {}",
        variant.name(),
        trained.seconds,
        fmt_accs(&val)
    );
    Ok(Done {
        p: (variant == Variant::FusionDropout).then_some(cfg.modality_dropout_p),
        trained,
        val,
        test,
    })
}

fn fmt_accs(m: &serde_json::Map<String, Value>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {:.2} %", v.as_f64().unwrap_or(f64::NAN) * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    json!({
        "cpu": cpu,
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}

/// Run the baseline on `export` and parse the JSON it prints.
fn run_torch(python: &Path, script: &Path, export: &Path, threads: Option<usize>) -> Result<Value> {
    let mut cmd = Command::new(python);
    cmd.arg(script).arg("--export").arg(export);
    if let Some(t) = threads {
        cmd.arg("--threads").arg(t.to_string());
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!("{} exited with {}", script.display(), out.status);
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing the JSON printed by {}", script.display()))
}

fn av_digits(a: AvDigitsArgs) -> Result<()> {
    crate::commands::init_logging_level("warn");
    let paths = AvDigitsPaths::under(&a.data);
    let missing = paths.missing();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|p| p.display().to_string()).collect();
        println!(
            "avfuse bench av-digits: skipped: the AV digits data is not there ({} missing). \
             It needs MNIST's t10k IDX files in DATA/mnist and FSDD's WAV recordings in \
             DATA/fsdd/recordings; pass --data DATA (default ../shared/data).",
            list.join(", ")
        );
        return Ok(());
    }
    let variants: Vec<Variant> = a
        .variants
        .iter()
        .map(|s| {
            Variant::parse(s.trim())
                .with_context(|| format!("--variants: unknown variant {s:?} (use a, b, c, d)"))
        })
        .collect::<Result<_>>()?;
    if a.p_grid.is_empty() || a.p_grid.iter().any(|p| !(0.0..=1.0).contains(p)) {
        bail!("--p-grid {:?}: every value must be in [0, 1]", a.p_grid);
    }
    let spec: DeviceSpec = a.device.parse()?;
    let device = spec.device()?;
    let progress = !a.no_progress;
    let net = DigitsNetConfig::standard();
    let mut cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        modality_dropout_p: a.p_grid[0],
        ..TrainConfig::default()
    };
    cfg.validate()?;

    let build = AvDigitsConfig {
        seed: a.seed,
        degradation: Degradation {
            occlusion_side: a.occlusion,
            image_noise_std: a.image_noise,
            snr_db: a.snr_db,
        },
        ..AvDigitsConfig::default()
    };
    let started = Instant::now();
    let sp = spinner(
        progress,
        "building the AV digits data (MNIST x FSDD, degraded)",
    );
    let data =
        load(&paths, &build).with_context(|| format!("building from {}", a.data.display()))?;
    sp.finish_and_clear();
    let data_s = started.elapsed().as_secs_f64();
    eprintln!(
        "data: train {}, val {}, test {} pairs; image {:?}, log-mel {:?}; built in {data_s:.1} s",
        data.train.len(),
        data.val.len(),
        data.test.len(),
        data.train.image_hw,
        data.train.mel_shape
    );

    let torch_variants = [Variant::Fusion, Variant::FusionDropout];
    if let Some(dir) = &a.export {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(EXPORT_FILE);
        write_export(&path, &data, &torch_variants, &net, &cfg, &device)?;
        println!("wrote {}", path.display());
        return Ok(());
    }

    // Train. Variant (d) once per p of the grid, chosen on validation.
    let mut done: Vec<Done> = Vec::new();
    let mut tuning = Vec::new();
    for &v in &variants {
        if v != Variant::FusionDropout {
            done.push(train_one(&data, v, &net, &cfg, &device, progress)?);
            continue;
        }
        let mut best: Option<Done> = None;
        for &p in &a.p_grid {
            let c = TrainConfig {
                modality_dropout_p: p,
                ..cfg.clone()
            };
            let d = train_one(&data, v, &net, &c, &device, progress)?;
            let score = mean_of(&d.val);
            tuning.push(json!({"p": p, "val": d.val, "val_mean": score}));
            if best.as_ref().is_none_or(|b| score > mean_of(&b.val)) {
                best = Some(d);
            }
        }
        if let Some(b) = best {
            cfg.modality_dropout_p = b.p.unwrap_or(cfg.modality_dropout_p);
            done.push(b);
        }
    }

    // PyTorch baseline of (c) and (d), on an export of exactly this data.
    let wanted: Vec<Variant> = torch_variants
        .into_iter()
        .filter(|v| variants.contains(v))
        .collect();
    let root = repo_root();
    let script = root.join(SCRIPT);
    let mut torch_note = None;
    let torch: Option<Value> = if a.no_torch || wanted.is_empty() {
        torch_note = Some("PyTorch baseline not run (--no-torch or no fusion variant)".into());
        None
    } else if let Some(python) = torch_python(&root) {
        let tmp = tempfile::tempdir().context("creating a temporary directory for the export")?;
        let path = tmp.path().join(EXPORT_FILE);
        let sp = spinner(progress, "writing the export for the PyTorch baseline");
        write_export(&path, &data, &wanted, &net, &cfg, &device)?;
        sp.finish_and_clear();
        eprintln!("running the PyTorch baseline ({})", python.display());
        match run_torch(&python, &script, &path, a.torch_threads) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("PyTorch baseline failed: {e:#}");
                torch_note = Some(format!("PyTorch baseline failed: {e:#}"));
                None
            }
        }
    } else {
        torch_note = Some(
            "no Python with torch (set AVFUSE_TORCH_PYTHON or create .venv-torch)".to_string(),
        );
        None
    };

    // Rows and targets.
    let torch_acc = |v: Variant, inputs: TestInputs| -> Option<f64> {
        torch.as_ref()?["variants"][v.letter()]["test"][inputs.name()].as_f64()
    };
    let mut rows = Vec::new();
    for d in &done {
        for &inputs in d.trained.variant.test_inputs() {
            rows.push(json!({
                "model": d.trained.variant.name(),
                "test_inputs": inputs.name(),
                "avfuse_acc": d.test.get(inputs.name()).and_then(Value::as_f64),
                "torch_acc": torch_acc(d.trained.variant, inputs),
            }));
        }
    }
    let acc = |v: Variant, inputs: TestInputs| -> Option<f64> {
        done.iter()
            .find(|d| d.trained.variant == v)
            .and_then(|d| d.test.get(inputs.name()))
            .and_then(Value::as_f64)
    };
    let both = TestInputs::Both;
    let (img, aud) = (TestInputs::ImageOnly, TestInputs::AudioOnly);
    let (a_, b_, c_, d_) = (
        Variant::ImageOnly,
        Variant::AudioOnly,
        Variant::Fusion,
        Variant::FusionDropout,
    );
    let check = |x: Option<f64>, y: Option<f64>, f: &dyn Fn(f64, f64) -> bool| -> Value {
        match (x, y) {
            (Some(x), Some(y)) => json!(f(x, y)),
            _ => Value::Null,
        }
    };
    let targets = json!({
        "d_both_ge_torch_d_both_minus_0.5pt": check(acc(d_, both), torch_acc(d_, both), &|x, y| x >= y - 0.005),
        "d_both_ge_c_both": check(acc(d_, both), acc(c_, both), &|x, y| x >= y),
        "d_image_only_within_2pt_of_a": check(acc(d_, img), acc(a_, img), &|x, y| x >= y - 0.02),
        "d_audio_only_within_2pt_of_b": check(acc(d_, aud), acc(b_, aud), &|x, y| x >= y - 0.02),
        "c_image_only_far_below_a (>10pt)": check(acc(c_, img), acc(a_, img), &|x, y| x < y - 0.10),
        "c_audio_only_far_below_b (>10pt)": check(acc(c_, aud), acc(b_, aud), &|x, y| x < y - 0.10),
    });
    let models: Vec<Value> = done
        .iter()
        .map(|d| {
            json!({
                "model": d.trained.variant.name(),
                "val_acc": d.val,
                "test_acc": d.test,
                "epoch_loss": d.trained.epoch_loss,
                "first_batch_loss": d.trained.first_loss,
                "samples_dropped": {"image": d.trained.dropped[0], "audio": d.trained.dropped[1]},
                "train_seconds": d.trained.seconds,
                "modality_dropout_p": d.p,
            })
        })
        .collect();
    let mut machine = machine();
    machine["avfuse"] = json!(env!("CARGO_PKG_VERSION"));
    machine["burn"] = json!(avfuse_train::trainer::BURN_VERSION);
    machine["torch"] = torch.as_ref().map_or(Value::Null, |t| t["torch"].clone());
    machine["python"] = torch.as_ref().map_or(Value::Null, |t| t["python"].clone());
    machine["device"] = json!(format!("{device:?}"));
    machine["date"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let result = json!({
        "benchmark": "av_digits",
        "machine": machine,
        "rows": rows,
        "targets": targets,
        "data": {
            "build": data.config,
            "splits": {"train": data.train.len(), "val": data.val.len(), "test": data.test.len()},
            "image_hw": data.train.image_hw,
            "mel_shape": data.train.mel_shape,
            "image_norm": data.image_norm,
            "mel_norm": data.mel_norm,
            "seconds": data_s,
            "rules": "MNIST test index i: test if i%5==4, val if i%10==3, else train; FSDD take t: test 0-4, val 5-9, train 10-49; pairs of one digit, seeded cycling permutations",
        },
        "model": {
            "image": {"channels": net.image.channels, "strides": net.image.strides},
            "audio": {"channels": net.audio.channels, "strides": net.audio.strides},
            "hidden": net.hidden,
            "fusion": "concatenation of presence-masked embeddings (global average pooled conv features)",
        },
        "train": cfg,
        "modality_dropout_tuning": tuning,
        "models": models,
        "torch": torch,
        "notes": torch_note,
    });
    let text = serde_json::to_string_pretty(&result)? + "\n";
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    atomic_write(&a.out, text.as_bytes())?;

    println!(
        "{:<28} {:<11} {:>11} {:>11}",
        "model", "test inputs", "avfuse acc", "torch acc"
    );
    for r in &rows {
        let pct = |v: &Value| {
            v.as_f64()
                .map_or("-".to_string(), |x| format!("{:.2} %", x * 100.0))
        };
        println!(
            "{:<28} {:<11} {:>11} {:>11}",
            r["model"].as_str().unwrap_or(""),
            r["test_inputs"].as_str().unwrap_or(""),
            pct(&r["avfuse_acc"]),
            pct(&r["torch_acc"])
        );
    }
    if let Some(obj) = targets.as_object() {
        for (k, v) in obj {
            println!("target {k}: {v}");
        }
    }
    println!("wrote {}", a.out.display());
    Ok(())
}
