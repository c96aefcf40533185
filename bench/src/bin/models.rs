//! `bench/models` (CPU rows): forward + backward step of avfuse's ResNet-18
//! (`avfuse_models::resnet`, 1000 classes, train mode, cross-entropy) against torchvision's
//! ResNet-18 on PyTorch CPU with the same thread count and shapes
//! (`bench/models/torch_cpu.py`), in one run. Writes `bench/results/models.json`.
//!
//! ```text
//! cargo run --release -p avfuse-bench --bin models -- [--threads 2] [--steps 3] [--shapes 32x224 8x224]
//! ```
//!
//! A step is forward, loss, backward (gradients of every parameter collected; no optimiser
//! update), median of `--steps` timed steps after one untimed warm-up step. Rows
//! `{model, device, batch, size, avfuse_ms, torch_ms, ratio}` with `ratio = avfuse_ms /
//! torch_ms` (above 1: avfuse slower). The AV-model row of issue 7 and the GPU rows are not
//! measured here (see `notes` in the result file).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use avfuse_bench::{machine, run_python_json, torch_python, write_json};
use avfuse_models::resnet::ResNetConfig;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// CPU threads for both sides (Burn's rayon pool, torch.set_num_threads).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Timed steps per shape (median reported; one untimed warm-up step first).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Shapes as BATCHxSIZE (square inputs).
    #[arg(long, num_args = 1.., default_values_t = ["32x224".to_string(), "8x224".to_string()])]
    shapes: Vec<String>,
    /// Result file.
    #[arg(long, default_value = "bench/results/models.json")]
    out: PathBuf,
    /// Skip the PyTorch side.
    #[arg(long)]
    no_torch: bool,
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let (b, r) = s
        .split_once('x')
        .with_context(|| format!("shape {s:?} is not BATCHxSIZE"))?;
    let (b, r) = (b.parse()?, r.parse()?);
    if b == 0 || r == 0 {
        bail!("shape {s:?}: batch and size must be >= 1");
    }
    Ok((b, r))
}

/// Median ms of a ResNet-18 forward + backward step at `[batch, 3, size, size]`.
fn avfuse_step_ms(batch: usize, size: usize, steps: usize) -> Result<f64> {
    let dev = Device::flex().autodiff();
    dev.seed(0);
    let model = ResNetConfig::new(18)
        .with_num_classes(Some(1000))
        .init(&dev)?;
    let n = batch * 3 * size * size;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 0.5).collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [batch, 3, size, size]), &dev);
    let y: Vec<i64> = (0..batch as i64).map(|i| i % 1000).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(y, [batch]), &dev);
    let loss_fn = CrossEntropyLossConfig::new().init(&dev);
    let mut times = Vec::new();
    for step in 0..=steps {
        let t = Instant::now();
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        drop(grads);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!("avfuse resnet18 batch {batch} {size}x{size} step {step}: {ms:.1} ms");
        if step > 0 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// `/proc/loadavg`'s 1-minute load (other processes compete for the same cores).
fn load_avg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() -> Result<()> {
    let args = Args::parse();
    let load_before = load_avg();
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("configuring the rayon pool")?;
    let shapes = args
        .shapes
        .iter()
        .map(|s| parse_shape(s))
        .collect::<Result<Vec<_>>>()?;

    let repo = avfuse_bench::repo_root();
    let (torch, torch_status) = if args.no_torch {
        (None, "skipped (--no-torch)".to_string())
    } else if let Some(py) = torch_python(&repo) {
        let mut py_args = vec![
            "--threads".to_string(),
            args.threads.to_string(),
            "--steps".to_string(),
            args.steps.to_string(),
            "--shapes".to_string(),
        ];
        py_args.extend(args.shapes.iter().cloned());
        match run_python_json(&py, &repo.join("bench/models/torch_cpu.py"), &py_args) {
            Ok(v) => (Some(v), "ok".to_string()),
            Err(e) => (None, format!("PyTorch reference failed: {e:#}")),
        }
    } else {
        (
            None,
            "no PyTorch found (.venv-torch or AVFUSE_TORCH_PYTHON)".to_string(),
        )
    };
    let torch_ms = |b: usize, r: usize| {
        torch.as_ref().and_then(|t| {
            t["rows"].as_array().and_then(|rows| {
                rows.iter()
                    .find(|row| row["batch"] == b && row["size"] == r)
                    .and_then(|row| row["ms"].as_f64())
            })
        })
    };

    let mut rows = Vec::new();
    for &(b, r) in &shapes {
        let ms = avfuse_step_ms(b, r, args.steps)?;
        let tm = torch_ms(b, r);
        eprintln!("resnet18 batch {b} {r}x{r}: avfuse {ms:.1} ms, torch {tm:?} ms");
        rows.push(serde_json::json!({
            "model": "resnet18",
            "device": format!("cpu ({} threads)", args.threads),
            "batch": b,
            "size": r,
            "avfuse_ms": (ms * 10.0).round() / 10.0,
            "torch_ms": tm,
            "ratio": tm.map(|t| (ms / t * 1000.0).round() / 1000.0),
        }));
    }
    let result = serde_json::json!({
        "benchmark": "models",
        "workload": "forward + cross-entropy + backward (all parameter gradients, no optimiser update), train mode, 1000 classes, f32",
        "steps": args.steps,
        "threads": args.threads,
        "machine": machine(),
        "load_avg_1min": { "before": load_before, "after": load_avg() },
        "torch_status": torch_status,
        "torch": torch,
        "notes": "ratio = avfuse_ms / torch_ms (> 1: avfuse slower). CPU rows only. Not measured here yet: the GPU rows and the AV-model row of issue 7 (the PyTorch reference's `av` workload); the lead adds them. The PyTorch side runs first, then avfuse, in one process tree on the same machine; on this shared 2-core VM other processes may run at the same time.",
        "rows": rows,
    });
    write_json(&args.out, &result)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
