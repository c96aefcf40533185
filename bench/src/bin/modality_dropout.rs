//! `bench/modality_dropout` (CPU rows): the two-stream ResNet-18-like network of
//! `../shared/bench/torch_reference.py` (RGB stream + 1-channel stream, batch 8, 112x112,
//! AdamW train steps) with 20 % per-sample modality dropout under each blanking strategy,
//! side by side with that script's `cpu` workload (PyTorch, same threads) in one run.
//! Writes `bench/results/modality_dropout.json`.
//!
//! ```text
//! cargo run --release -p avfuse-bench --bin modality_dropout -- [--steps 5]
//! ```
//! Strategies: `none` (no dropout), `mask` (masked BatchNorm, presence applied to the
//! features), `compact` (each stream on its present samples only), `zero_input` (zeroed
//! inputs, plain BatchNorm). PyTorch's CPU workload measures `none` and `compact`.
//! GPU rows (batch 32, 224x224, fp32/bf16 against `torch_reference.py two_stream`) are not
//! measured by this binary yet.

use std::path::PathBuf;

use anyhow::Result;
use avfuse_bench::{machine, run_python_json, torch_python, write_json};
use avfuse_models::run_on_rows;
use avfuse_nn::{MaskedBatchNorm, MaskedBatchNormConfig};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;

/// Counts heap bytes: the peak-memory columns (Flex tensors live on the heap).
#[global_allocator]
static ALLOC: avfuse_bench::PeakAlloc = avfuse_bench::PeakAlloc::new();

#[derive(Parser)]
struct Args {
    /// Timed train steps per strategy (median reported; one untimed warm-up round first;
    /// the strategies interleave, one step each per round).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Input side, pixels.
    #[arg(long, default_value_t = 112)]
    res: usize,
    /// Result file.
    #[arg(long, default_value = "bench/results/modality_dropout.json")]
    out: PathBuf,
    /// Skip the PyTorch side.
    #[arg(long)]
    no_torch: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Strategy {
    None,
    Mask,
    Compact,
    ZeroInput,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::None => "none",
            Strategy::Mask => "mask",
            Strategy::Compact => "compact",
            Strategy::ZeroInput => "zero_input",
        }
    }
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, d: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(d)
}

fn bn(c: usize, d: &Device) -> MaskedBatchNorm {
    MaskedBatchNormConfig::new(c).init(d)
}

/// BatchNorm with presence (`mask`) or over every sample.
fn norm(b: &MaskedBatchNorm, x: Tensor<4>, p: Option<&Tensor<1>>) -> Tensor<4> {
    match p {
        Some(p) => b.forward(x, p.clone()),
        None => b.forward_all_present(x),
    }
}

#[derive(Module, Debug)]
struct Block {
    c1: Conv2d,
    b1: MaskedBatchNorm,
    c2: Conv2d,
    b2: MaskedBatchNorm,
    down: Option<Conv2d>,
    bd: Option<MaskedBatchNorm>,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, d: &Device) -> Self {
        let proj = stride != 1 || cin != cout;
        Self {
            c1: conv(cin, cout, 3, stride, 1, d),
            b1: bn(cout, d),
            c2: conv(cout, cout, 3, 1, 1, d),
            b2: bn(cout, d),
            down: proj.then(|| conv(cin, cout, 1, stride, 0, d)),
            bd: proj.then(|| bn(cout, d)),
        }
    }

    fn forward(&self, x: Tensor<4>, p: Option<&Tensor<1>>) -> Tensor<4> {
        let y = relu(norm(&self.b1, self.c1.forward(x.clone()), p));
        let y = norm(&self.b2, self.c2.forward(y), p);
        let s = match (&self.down, &self.bd) {
            (Some(c), Some(b)) => norm(b, c.forward(x), p),
            _ => x,
        };
        relu(y + s)
    }
}

/// ResNet-18 layout: 7x7/2 stem, 3x3/2 max pool, 4 stages of 2 basic blocks (64-512).
#[derive(Module, Debug)]
struct Stream {
    stem: Conv2d,
    bn: MaskedBatchNorm,
    pool: MaxPool2d,
    blocks: Vec<Block>,
    avg: AdaptiveAvgPool2d,
}

impl Stream {
    fn new(cin: usize, d: &Device) -> Self {
        let chans = [64, 64, 128, 256, 512];
        let mut blocks = Vec::new();
        for i in 0..4 {
            blocks.push(Block::new(
                chans[i],
                chans[i + 1],
                if i == 0 { 1 } else { 2 },
                d,
            ));
            blocks.push(Block::new(chans[i + 1], chans[i + 1], 1, d));
        }
        Self {
            stem: conv(cin, 64, 7, 2, 3, d),
            bn: bn(64, d),
            pool: MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(),
            blocks,
            avg: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
        }
    }

    /// `[N, C, H, W]` -> `[N, 512]`.
    fn forward(&self, x: Tensor<4>, p: Option<&Tensor<1>>) -> Tensor<2> {
        let x = relu(norm(&self.bn, self.stem.forward(x), p));
        let mut x = self.pool.forward(x);
        for b in &self.blocks {
            x = b.forward(x, p);
        }
        self.avg.forward(x).flatten::<2>(1, 3)
    }
}

#[derive(Module, Debug)]
struct TwoStream {
    a: Stream,
    b: Stream,
    fc: Linear,
}

/// Run `stream` on the present samples only and scatter the features into zeros.
fn compact(stream: &Stream, x: Tensor<4>, mask: &[f32], d: &Device) -> Tensor<2> {
    let idx: Vec<i64> = (0..mask.len())
        .filter(|&i| mask[i] != 0.0)
        .map(|i| i as i64)
        .collect();
    let zeros = Tensor::<2>::zeros([mask.len(), 512], d);
    run_on_rows(x, idx, zeros, |x| stream.forward(x, None))
}

impl TwoStream {
    fn new(d: &Device) -> Self {
        Self {
            a: Stream::new(3, d),
            b: Stream::new(1, d),
            fc: LinearConfig::new(1024, 2).init(d),
        }
    }

    fn forward(
        &self,
        xa: Tensor<4>,
        xb: Tensor<4>,
        s: Strategy,
        ma: &[f32],
        mb: &[f32],
    ) -> Tensor<2> {
        let d = xa.device();
        let bsz = ma.len();
        let pa = Tensor::<1>::from_data(TensorData::new(ma.to_vec(), [bsz]), &d);
        let pb = Tensor::<1>::from_data(TensorData::new(mb.to_vec(), [bsz]), &d);
        let (fa, fb) = match s {
            Strategy::None => (self.a.forward(xa, None), self.b.forward(xb, None)),
            Strategy::Mask => (
                self.a.forward(xa, Some(&pa)) * pa.clone().reshape([bsz, 1]),
                self.b.forward(xb, Some(&pb)) * pb.clone().reshape([bsz, 1]),
            ),
            Strategy::ZeroInput => (
                self.a.forward(xa * pa.reshape([bsz, 1, 1, 1]), None),
                self.b.forward(xb * pb.reshape([bsz, 1, 1, 1]), None),
            ),
            Strategy::Compact => (compact(&self.a, xa, ma, &d), compact(&self.b, xb, mb, &d)),
        };
        self.fc.forward(Tensor::cat(vec![fa, fb], 1))
    }
}

/// Per-sample masks with probability p: one of the two streams dropped (50/50), never both.
fn masks(bsz: usize, p: f64, step: u64) -> (Vec<f32>, Vec<f32>) {
    let mut ma = vec![1.0f32; bsz];
    let mut mb = vec![1.0f32; bsz];
    for i in 0..bsz {
        let mut pres = [1u8, 1];
        let id = step * bsz as u64 + i as u64;
        if avfuse_nn::modality_dropout::drop_sample(&mut pres, p, 1, 0, id).is_some() {
            ma[i] = f32::from(pres[0]);
            mb[i] = f32::from(pres[1]);
        }
    }
    (ma, mb)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dev = Device::flex().autodiff();
    let (b, r) = (args.batch, args.res);
    let host = |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin()).collect() };
    let xa = Tensor::<4>::from_data(
        TensorData::new(host(b * 3 * r * r, 0.37), [b, 3, r, r]),
        &dev,
    );
    let xb = Tensor::<4>::from_data(TensorData::new(host(b * r * r, 0.11), [b, 1, r, r]), &dev);
    let y = Tensor::<1, Int>::from_data(
        TensorData::new((0..b as i64).map(|i| i % 2).collect::<Vec<_>>(), [b]),
        &dev,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&dev);
    let strategies = [
        Strategy::None,
        Strategy::Mask,
        Strategy::Compact,
        Strategy::ZeroInput,
    ];
    // One model and optimiser per strategy, all alive at once: the timed steps interleave
    // the strategies (rotating their order every round), so slow drift of the shared VM and
    // the warm-up of the allocator hit every strategy alike instead of whichever runs first.
    let before_states = ALLOC.live_bytes();
    let mut states: Vec<_> = strategies
        .iter()
        .map(|_| {
            dev.seed(0);
            Some((TwoStream::new(&dev), AdamWConfig::new().init()))
        })
        .collect();
    let mut times = vec![Vec::new(); strategies.len()];
    let mut step_peaks = vec![0usize; strategies.len()];
    let mut state_bytes = 0usize;
    for round in 0..=args.steps as u64 {
        for k in 0..strategies.len() {
            let i = (k + round as usize) % strategies.len();
            let s = strategies[i];
            let p = if s == Strategy::None { 0.0 } else { 0.2 };
            let (ma, mb) = masks(b, p, round);
            let Some((model, mut optim)) = states[i].take() else {
                unreachable!("every state is put back after its step")
            };
            // Peak heap of this step above what was live before it: its activations and
            // gradients (the model, AdamW state and inputs are already live).
            let base = ALLOC.live_bytes();
            ALLOC.reset_peak();
            let t = std::time::Instant::now();
            let logits = model.forward(xa.clone(), xb.clone(), s, &ma, &mb);
            let loss = loss_fn.forward(logits, y.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let model = optim.step(1e-3, model, grads);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            let step_peak = ALLOC.peak_bytes().saturating_sub(base);
            states[i] = Some((model, optim));
            if round > 0 {
                times[i].push(ms);
                step_peaks[i] = step_peaks[i].max(step_peak);
            }
        }
        if round == 0 {
            // After the warm-up round every AdamW state holds its moments: one strategy's
            // resting state is a quarter of what the four hold.
            state_bytes = ALLOC.live_bytes().saturating_sub(before_states) / strategies.len();
        }
    }
    drop(states);
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // The peak of one strategy run alone: inputs + its model and AdamW state + one step.
    let resting = before_states + state_bytes;
    let none_peak = Some(resting + step_peaks[0]);
    let mut rows = Vec::new();
    for (i, s) in strategies.iter().enumerate() {
        // Overhead: the median of the per-round ratios to `none` (steps of one round run
        // seconds apart, so drift of the machine cancels in each ratio), with its spread.
        let mut ratios: Vec<f64> = times[i].iter().zip(&times[0]).map(|(t, n)| t / n).collect();
        let overhead = median(&mut ratios);
        let (lo, hi) = (ratios[0], ratios[ratios.len() - 1]);
        let ms = median(&mut times[i].clone());
        let peak = resting + step_peaks[i];
        eprintln!(
            "avfuse two-stream {:10} {ms:8.1} ms/step, x{overhead:.3} of none (rounds {lo:.3}..{hi:.3}), peak heap {:.1} MiB (a step: {:.1} MiB above the resting state)",
            s.name(),
            peak as f64 / 1048576.0,
            step_peaks[i] as f64 / 1048576.0
        );
        rows.push((*s, ms, overhead, (lo, hi), peak, step_peaks[i]));
    }

    let repo = avfuse_bench::repo_root();
    let reference = repo.join("../shared/bench/torch_reference.py");
    let (torch, note) = if args.no_torch {
        (None, "skipped (--no-torch)".to_string())
    } else if !reference.is_file() {
        (None, format!("{} not found", reference.display()))
    } else if let Some(py) = torch_python(&repo) {
        let r = run_python_json(
            &py,
            &repo.join("bench/modality_dropout/torch_cpu.py"),
            &[reference.display().to_string()],
        );
        match r {
            Ok(v) => (Some(v), "ok".into()),
            Err(e) => (None, format!("PyTorch reference failed: {e:#}")),
        }
    } else {
        (
            None,
            "no PyTorch found (.venv-torch or AVFUSE_TORCH_PYTHON)".into(),
        )
    };
    let torch_ms = |name: &str| torch.as_ref().and_then(|t| t[name]["ms"].as_f64());
    let out_rows: Vec<_> = rows
        .iter()
        .map(|(s, ms, overhead, (lo, hi), peak, step_peak)| {
            serde_json::json!({
                "device": "cpu",
                "dtype": "f32",
                "strategy": s.name(),
                "step_ms": (ms * 10.0).round() / 10.0,
                "peak_mem_bytes": peak,
                "step_peak_mem_bytes": step_peak,
                "peak_mem_vs_none": none_peak.map(|n| (*peak as f64 / n as f64 * 1000.0).round() / 1000.0),
                "overhead_vs_none": (overhead * 1000.0).round() / 1000.0,
                "overhead_range": [(lo * 1000.0).round() / 1000.0, (hi * 1000.0).round() / 1000.0],
                "torch_step_ms": torch_ms(s.name()),
            })
        })
        .collect();
    let result = serde_json::json!({
        "benchmark": "modality_dropout",
        "workload": format!("two-stream ResNet-18-like, batch {b}, {r}x{r}, AdamW train step, p = 0.2 per sample"),
        "steps": args.steps,
        "machine": machine(),
        "torch_status": note,
        "torch": torch,
        "method": "the four strategies each have their own model and AdamW state and are timed interleaved, one step each per round in a rotating order, after one untimed warm-up round; step_ms is the median over rounds; overhead_vs_none is the median over rounds of the step time divided by the same round's `none` step (overhead_range: the smallest and largest of those ratios)",
        "notes": "CPU rows only. step_peak_mem_bytes: the largest rise of live heap bytes during one train step of the strategy (a counting global allocator; Flex tensors live on the heap): its activations and gradients. peak_mem_bytes: what one strategy run alone peaks at, the inputs + one model and its AdamW state (measured after the warm-up) + step_peak_mem_bytes. PyTorch CPU peak memory is not measured (its allocator is outside this process). torch_reference.py's cpu workload measures none and compact only.",
        "rows": out_rows,
    });
    write_json(&args.out, &result)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
