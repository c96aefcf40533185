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
//! torch_ms` (above 1: avfuse slower).
//!
//! `--av` adds the AV-model row: the audio-visual model of `../shared/bench/torch_reference.py`
//! (`AVModel`: ResNet-18-like per-frame CNN, a 2-layer post-norm Transformer over the frames,
//! a 4-conv mel CNN, self-attention over the two modality tokens, an MLP head; batch-level
//! modality dropout 0.3) rebuilt on avfuse: avfuse's ResNet-18 trunk, Burn's
//! `TransformerEncoder` (post-norm, ReLU) and `MultiHeadAttention`, avfuse's dropout. A step
//! is a full AdamW train step (lr 1e-4) at the reference's shapes (batch 16, 8 frames of
//! 112x112, mel 80x256); PyTorch runs the reference's own `AVModel` class on the CPU. The GPU
//! rows are not measured here.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use avfuse_bench::{machine, median_ms, run_python_json, torch_python, write_json};
use avfuse_models::resnet::{ResNet, ResNetConfig};
use avfuse_nn::dropout::{Dropout, DropoutConfig};
use burn::module::Module;
use burn::nn::activation::ActivationConfig;
use burn::nn::attention::{MhaInput, MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::transformer::{
    TransformerEncoder, TransformerEncoderConfig, TransformerEncoderInput,
};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
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
    /// Also measure the reference's AV model (see the module docs).
    #[arg(long)]
    av: bool,
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
    let ms = median_ms(1, steps, || {
        let loss = loss_fn.forward(model.forward(x.clone()), y.clone());
        drop(GradientsParams::from_grads(loss.backward(), &model));
    });
    eprintln!("avfuse resnet18 batch {batch} {size}x{size}: median {ms:.1} ms/step");
    Ok(ms)
}

/// One block of the reference's mel CNN: 3x3 conv (bias), BatchNorm, ReLU, then a 2x2 max
/// pool (the last block pools globally instead).
#[derive(Module, Debug)]
struct MelBlock {
    conv: Conv2d,
    bn: BatchNorm,
}

/// The reference's `AVModel` on avfuse (see the module docs). Shapes: video
/// `[B, T, 3, H, W]`, mel `[B, 1, 80, 256]`, logits `[B, 2]`.
#[derive(Module, Debug)]
struct AvReference {
    frame: ResNet,
    temporal: TransformerEncoder,
    audio: Vec<MelBlock>,
    pool: MaxPool2d,
    audio_out: Linear,
    attn: MultiHeadAttention,
    hidden: Linear,
    drop: Dropout,
    out: Linear,
}

impl AvReference {
    fn new(d: &Device) -> Result<Self> {
        let mut c_in = 1;
        let audio = [32, 64, 128, 256]
            .into_iter()
            .map(|c| {
                let block = MelBlock {
                    conv: Conv2dConfig::new([c_in, c], [3, 3])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(d),
                    bn: BatchNormConfig::new(c).init(d),
                };
                c_in = c;
                block
            })
            .collect();
        Ok(Self {
            frame: ResNetConfig::new(18).with_num_classes(None).init(d)?,
            temporal: TransformerEncoderConfig::new(512, 2048, 8, 2)
                .with_dropout(0.1)
                .with_norm_first(false)
                .with_activation(ActivationConfig::Relu)
                .init(d),
            audio,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            audio_out: LinearConfig::new(256, 512).init(d),
            // nn.MultiheadAttention's default dropout is 0.
            attn: MultiHeadAttentionConfig::new(512, 8)
                .with_dropout(0.0)
                .init(d),
            hidden: LinearConfig::new(1024, 256).init(d),
            drop: DropoutConfig::new(0.5).init()?,
            out: LinearConfig::new(256, 2).init(d),
        })
    }

    /// `drop`: the batch-level modality dropout of this step (`Some(0)` zeroes the video
    /// token, `Some(1)` the audio token).
    fn forward(&self, video: Tensor<5>, mel: Tensor<4>, drop: Option<usize>) -> Tensor<2> {
        let [b, t, c, h, w] = video.dims();
        let f = self.frame.features(video.reshape([b * t, c, h, w]));
        let v = self
            .temporal
            .forward(TransformerEncoderInput::new(f.reshape([b, t, 512])))
            .mean_dim(1)
            .reshape([b, 512]);
        let n = self.audio.len();
        let mut a = mel;
        for (i, blk) in self.audio.iter().enumerate() {
            a = relu(blk.bn.forward(blk.conv.forward(a)));
            if i + 1 < n {
                a = self.pool.forward(a);
            }
        }
        let [_, ca, _, _] = a.dims();
        let a = self
            .audio_out
            .forward(a.mean_dim(3).mean_dim(2).reshape([b, ca]));
        let (v, a) = match drop {
            Some(0) => (v.zeros_like(), a),
            Some(_) => (v, a.zeros_like()),
            None => (v, a),
        };
        let tok = Tensor::stack::<3>(vec![v, a], 1);
        let fused = self.attn.forward(MhaInput::self_attn(tok)).context;
        let h = relu(self.hidden.forward(fused.reshape([b, 1024])));
        self.out.forward(self.drop.forward(h))
    }
}

/// Median ms of a full AdamW train step of [`AvReference`] at batch `b`, `t` frames of
/// `res` px, mel 80 x 256.
fn avfuse_av_step_ms(b: usize, t: usize, res: usize, steps: usize) -> Result<f64> {
    let dev = Device::flex().autodiff();
    dev.seed(0);
    let model = AvReference::new(&dev)?;
    let mut optim = AdamWConfig::new().init();
    let wave = |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin()).collect() };
    let video = Tensor::<5>::from_data(
        TensorData::new(wave(b * t * 3 * res * res, 0.37), [b, t, 3, res, res]),
        &dev,
    );
    let mel = Tensor::<4>::from_data(
        TensorData::new(wave(b * 80 * 256, 0.11), [b, 1, 80, 256]),
        &dev,
    );
    let y = Tensor::<1, Int>::from_data(
        TensorData::new((0..b as i64).map(|i| i % 2).collect::<Vec<_>>(), [b]),
        &dev,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&dev);
    // The reference's p_mod = 0.3, then 50/50 which modality; a fixed seeded sequence here.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    // The optimiser step consumes the model and returns the updated one.
    let mut model = Some(model);
    let ms = median_ms(1, steps, || {
        let drop = (uniform() < 0.3).then(|| usize::from(uniform() >= 0.5));
        let Some(m) = model.take() else {
            unreachable!("the model is put back after every step")
        };
        let loss = loss_fn.forward(m.forward(video.clone(), mel.clone(), drop), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(1e-4, m, grads));
    });
    eprintln!("avfuse av model batch {b}: median {ms:.1} ms/step");
    Ok(ms)
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
        if args.av {
            py_args.push("--av-reference".into());
            py_args.push(
                repo.join("../shared/bench/torch_reference.py")
                    .display()
                    .to_string(),
            );
        }
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
    if args.av {
        let (b, t, res) = (16, 8, 112);
        let ms = avfuse_av_step_ms(b, t, res, args.steps)?;
        let tm = torch.as_ref().and_then(|t| t["av"]["ms"].as_f64());
        eprintln!("av model batch {b}: avfuse {ms:.1} ms, torch {tm:?} ms");
        rows.push(serde_json::json!({
            "model": "av_model (torch_reference.py AVModel)",
            "device": format!("cpu ({} threads)", args.threads),
            "batch": b,
            "frames": t,
            "size": res,
            "mel": [80, 256],
            "workload": "AdamW train step (lr 1e-4), cross-entropy, train mode, batch-level modality dropout 0.3",
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
        "notes": "ratio = avfuse_ms / torch_ms (> 1: avfuse slower). CPU rows only; the GPU rows are not measured here. resnet18 rows: forward + loss + backward, no optimiser update. The av_model row (--av): the reference's AVModel rebuilt on avfuse (avfuse's ResNet-18 trunk and dropout, Burn's post-norm TransformerEncoder and MultiHeadAttention, BatchNorm mel CNN), a full AdamW step, against the reference's own AVModel class on the CPU. The PyTorch side runs first, then avfuse, in one process tree on the same machine; on this shared 2-core VM other processes may run at the same time.",
        "rows": rows,
    });
    write_json(&args.out, &result)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
