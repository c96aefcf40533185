//! `bench/dropout_kernels`: every dropout variant, forward and forward+backward, against a
//! copy of the same tensor (the memory-bandwidth floor) and against PyTorch at the same
//! thread count, in one run. Writes `bench/results/dropout_kernels.json`.
//!
//! ```text
//! cargo run --release -p avfuse-bench --bin dropout_kernels -- [--n 33554432] [--iters 10]
//! cargo build --release -p avfuse-bench --features cuda --bin dropout_kernels   # GPU build
//! dropout_kernels --device cuda            # 2^28 elements, f32 and bf16, the CubeCL kernel
//! ```
//! Needs `.venv-torch` (see bench/README.md) or `AVFUSE_TORCH_PYTHON` for the PyTorch
//! columns; without it the torch columns are null and the file says why. The PyTorch side
//! (`bench/dropout_kernels/torch_dropout.py`) runs on the same device.
//!
//! What is timed on the CPU (Flex, Burn's CPU backend; all ops are synchronous on it):
//! - `copy`: `copy_ms` copies into a freshly allocated buffer, as a tensor clone (and
//!   PyTorch's `clone()`, its reference) does: allocation and first-touch page faults
//!   included, like every out-of-place op. `copy_prefaulted_ms` copies into a buffer
//!   already touched (rayon threads or one memcpy, the faster): the pure bandwidth floor.
//! - `fwd`: `dropout_family(x)` out of place (x is shared, so the kernel allocates y).
//! - `fwd+bwd`: the two kernels a training step runs, forward on x and the backward on an
//!   upstream gradient g (same seed, mask regenerated, nothing stored). The same through
//!   Burn's autodiff graph, which adds graph bookkeeping and Burn's `ones` seed gradient, is
//!   recorded as `autodiff_ms`.
//! - `kernel_prefaulted_ms` (fwd rows): the kernel alone between host buffers already
//!   touched, against `copy_prefaulted_ms`: the kernel's own distance to the bandwidth floor.
//!   On a VM, first-touch page faults of a fresh 128 MiB output cost several times the copy
//!   itself; they are the same for PyTorch (compare `copy_ms` with `torch_copy_ms`).
//!
//! On a GPU (`--device cuda`, or `wgpu` to smoke-test the GPU path on any Vulkan driver):
//! every timed call ends with `Device::sync`, so the interval covers launch and completion.
//! `copy_ms` is Burn's element-wise `neg` of the same tensor (one read and one write, the
//! copy's traffic; Burn's `clone` only shares the buffer), `torch_copy_ms` PyTorch's
//! `clone()`. There is no host-only kernel time on a GPU (`kernel_prefaulted_ms` is null).

use std::path::PathBuf;

use anyhow::Result;
use avfuse_bench::{machine, median_ms, run_python_json, torch_python, write_json};
use avfuse_nn::dropout::{TimeAxis, Variant, dropout_family};
use burn::tensor::{DType, Device, Tensor, TensorData};
use clap::Parser;
use rayon::prelude::*;

#[derive(Parser)]
struct Args {
    /// Where to run: `cpu` (Flex), `cuda` (needs `--features cuda`) or `wgpu` (needs
    /// `--features wgpu`; a smoke test of the GPU path, e.g. on lavapipe).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Elements per tensor (a multiple of 2^21). Default 2^25 on the CPU, 2^28 on a GPU.
    #[arg(long)]
    n: Option<usize>,
    /// Timed iterations (median reported).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Result file. Default `bench/results/dropout_kernels.json` on the CPU,
    /// `bench/results/dropout_kernels_<device>.json` otherwise.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only the variants whose name contains this (the result file then holds only those).
    #[arg(long)]
    only: Option<String>,
    /// Skip the PyTorch side.
    #[arg(long)]
    no_torch: bool,
}

/// The same views as bench/dropout_kernels/torch_dropout.py.
fn cases(n: usize) -> Vec<(&'static str, Variant, Vec<usize>)> {
    vec![
        ("dropout", Variant::Dropout, vec![n]),
        (
            "dropout1d",
            Variant::Dropout1d,
            vec![1 << 12, 1 << 6, n >> 18],
        ),
        (
            "dropout2d",
            Variant::Dropout2d,
            vec![1 << 12, 1 << 6, 8, n >> 21],
        ),
        (
            "dropout3d",
            Variant::Dropout3d,
            vec![1 << 12, 1 << 6, 2, 4, n >> 21],
        ),
        ("alpha_dropout", Variant::Alpha, vec![n]),
        (
            "feature_alpha_dropout",
            Variant::FeatureAlpha,
            vec![1 << 12, 1 << 6, n >> 18],
        ),
        (
            "drop_path",
            Variant::DropPath {
                scale_by_keep: true,
            },
            vec![1 << 8, n >> 8],
        ),
        (
            "locked_dropout",
            Variant::Locked(TimeAxis::TimeMajor),
            vec![1 << 7, 1 << 8, n >> 15],
        ),
    ]
}

fn run<const D: usize>(x: Tensor<D>, v: Variant, seed: u64) -> Tensor<D> {
    match dropout_family(x, v, 0.5, true, seed) {
        Ok(y) => y,
        Err(e) => panic!("bench shapes are valid for every variant: {e}"),
    }
}

/// The benchmark's device: Flex, or a GPU whose work is asynchronous (synced per call).
struct Target {
    name: &'static str,
    device: Device,
    gpu: bool,
}

impl Target {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self {
                name: "cpu",
                device: Device::flex(),
                gpu: false,
            }),
            #[cfg(feature = "cuda")]
            "cuda" => Ok(Self {
                name: "cuda",
                device: Device::cuda(0),
                gpu: true,
            }),
            #[cfg(feature = "wgpu")]
            "wgpu" => Ok(Self {
                name: "wgpu",
                device: Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
                gpu: true,
            }),
            #[cfg(not(feature = "cuda"))]
            "cuda" => anyhow::bail!(
                "--device cuda: this binary was built without it; rebuild with `--features cuda`"
            ),
            #[cfg(not(feature = "wgpu"))]
            "wgpu" => anyhow::bail!(
                "--device wgpu: this binary was built without it; rebuild with `--features wgpu`"
            ),
            other => anyhow::bail!("--device {other:?}: expected cpu, cuda or wgpu"),
        }
    }

    /// Wait for the device's queued work (a no-op on Flex, whose ops are synchronous).
    fn sync(&self) {
        if self.gpu
            && let Err(e) = self.device.sync()
        {
            panic!("{} device failed while benchmarking: {e:?}", self.name);
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let target = Target::parse(&args.device)?;
    let n = args.n.unwrap_or(if target.gpu { 1 << 28 } else { 1 << 25 });
    anyhow::ensure!(
        n % (1 << 21) == 0,
        "--n must be a multiple of 2^21, got {n}"
    );
    let out_path = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(if target.gpu {
            format!("bench/results/dropout_kernels_{}.json", target.name)
        } else {
            "bench/results/dropout_kernels.json".to_string()
        })
    });
    let device = target.device.clone();
    let ad = target.device.clone().autodiff();
    // wgpu has no bf16 (WGSL).
    let dtypes: &[DType] = if target.name == "wgpu" {
        &[DType::F32]
    } else {
        &[DType::F32, DType::BF16]
    };
    let mut rows = Vec::new();
    let mut raw_rows = Vec::new();
    for &dtype in dtypes {
        let name = if dtype == DType::F32 { "f32" } else { "bf16" };
        let host: Vec<f32> = (0..n)
            .map(|i| ((i * 2_654_435_761usize) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let x1 = Tensor::<1>::from_data(TensorData::new(host.clone(), [n]), &device).cast(dtype);
        let g1 = Tensor::<1>::from_data(TensorData::new(host, [n]), &device).cast(dtype);
        let (copy_ms, prefaulted_ms) = if target.gpu {
            let ms = median_ms(2, args.iters, || {
                // Keep the output alive through the sync: Fusion may skip work whose
                // result was already dropped.
                let y = x1.clone().neg();
                target.sync();
                std::hint::black_box(y);
            });
            (ms, ms)
        } else {
            copy_floor(n, dtype)
        };
        eprintln!(
            "avfuse copy {name}: {copy_ms:.3} ms (into a touched buffer {prefaulted_ms:.3} ms)"
        );
        for (variant, v, dims) in cases(n) {
            if args.only.as_deref().is_some_and(|o| !variant.contains(o)) {
                continue;
            }
            let (fwd, fb, autodiff) = match dims.len() {
                1 => time_variant::<1>(&x1, &g1, &ad, &target, v, &dims, args.iters),
                2 => time_variant::<2>(&x1, &g1, &ad, &target, v, &dims, args.iters),
                3 => time_variant::<3>(&x1, &g1, &ad, &target, v, &dims, args.iters),
                4 => time_variant::<4>(&x1, &g1, &ad, &target, v, &dims, args.iters),
                _ => time_variant::<5>(&x1, &g1, &ad, &target, v, &dims, args.iters),
            };
            let raw = (!target.gpu).then(|| raw_kernel_ms(n, dtype, v, &dims, args.iters));
            eprintln!(
                "avfuse {variant:22} {name:4} fwd {fwd:8.3} ms  fwd+bwd {fb:8.3} ms  (autodiff graph {autodiff:8.3} ms; kernel into touched memory {raw:?} ms)"
            );
            raw_rows.push((variant, name, raw));
            rows.push((variant, name, "fwd", fwd, copy_ms, prefaulted_ms, None));
            rows.push((
                variant,
                name,
                "fwd+bwd",
                fb,
                copy_ms,
                prefaulted_ms,
                Some(autodiff),
            ));
        }
    }

    // PyTorch at the same thread count, in the same run.
    let repo = avfuse_bench::repo_root();
    let threads = rayon::current_num_threads();
    let (torch, torch_note) = match (args.no_torch, torch_python(&repo)) {
        (true, _) => (None, "skipped (--no-torch)".to_string()),
        (false, None) => (
            None,
            "no PyTorch found (.venv-torch or AVFUSE_TORCH_PYTHON)".into(),
        ),
        (false, Some(py)) => {
            let script = repo.join("bench/dropout_kernels/torch_dropout.py");
            let a = [
                n.to_string(),
                threads.to_string(),
                args.iters.to_string(),
                target.name.to_string(),
            ];
            match run_python_json(&py, &script, &a) {
                Ok(v) => (Some(v), "ok".into()),
                Err(e) => (None, format!("PyTorch reference failed: {e:#}")),
            }
        }
    };
    let torch_row = |variant: &str, dtype: &str, pass: &str| -> Option<(f64, f64)> {
        let t = torch.as_ref()?;
        t["rows"].as_array()?.iter().find_map(|r| {
            (r["variant"] == variant && r["dtype"] == dtype && r["pass"] == pass)
                .then(|| Some((r["ms"].as_f64()?, r["copy_ms"].as_f64()?)))
                .flatten()
        })
    };
    let mut out_rows = Vec::new();
    for (variant, dtype, pass, ms, copy_ms, prefaulted_ms, autodiff) in rows {
        let copies = if pass == "fwd" { 1.0 } else { 2.0 };
        let t = torch_row(variant, dtype, pass);
        let raw = (pass == "fwd")
            .then(|| {
                raw_rows
                    .iter()
                    .find(|r| r.0 == variant && r.1 == dtype)
                    .and_then(|r| r.2)
            })
            .flatten();
        out_rows.push(serde_json::json!({
            "variant": variant,
            "dtype": dtype,
            "pass": pass,
            "avfuse_ms": round(ms),
            "copy_ms": round(copy_ms),
            "ratio_to_copy": round(ms / (copies * copy_ms)),
            "copy_prefaulted_ms": (!target.gpu).then(|| round(prefaulted_ms)),
            "ratio_to_prefaulted_copy": (!target.gpu).then(|| round(ms / (copies * prefaulted_ms))),
            "torch_ms": t.map(|(m, _)| round(m)),
            "torch_copy_ms": t.map(|(_, c)| round(c)),
            "torch_ratio_to_copy": t.map(|(m, c)| round(m / (copies * c))),
            "speedup_vs_torch": t.map(|(m, _)| round(m / ms)),
            "autodiff_ms": autodiff.map(round),
            "kernel_prefaulted_ms": raw.map(round),
            "kernel_ratio_to_prefaulted_copy": raw.map(|r| round(r / prefaulted_ms)),
        }));
    }
    let result = serde_json::json!({
        "benchmark": "dropout_kernels",
        "device": target.name,
        "gpu": torch.as_ref().and_then(|t| t.get("gpu").cloned()),
        "elements": n,
        "p": 0.5,
        "iters": args.iters,
        "threads": threads,
        "machine": machine(),
        "torch": torch.as_ref().map(|t| t["torch"].clone()),
        "torch_status": torch_note,
        "notes": if target.gpu {
            "ratio_to_copy: fwd / copy_ms, fwd+bwd / (2 * copy_ms), copy_ms being Burn's element-wise neg of the same tensor (one read, one write), every call synced; torch_ratio_to_copy uses torch's own clone() time."
        } else {
            "ratio_to_copy: fwd / copy_ms, fwd+bwd / (2 * copy_ms), copy_ms being a copy into fresh memory like torch clone(); torch_ratio_to_copy uses torch's own clone() time. GPU rows: see dropout_kernels_cuda.json when measured (--device cuda)."
        },
        "rows": out_rows,
    });
    write_json(&out_path, &result)?;
    eprintln!("wrote {}", out_path.display());
    Ok(())
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The copy floor, two ways: `(alloc, prefaulted)`. `alloc` copies into a freshly
/// allocated buffer (what a tensor clone, and every out-of-place op, pays: allocation and
/// first-touch page faults included); `prefaulted` copies into a buffer already touched,
/// with the same rayon threads or one memcpy, whichever is faster (the pure bandwidth floor).
fn copy_floor(n: usize, dtype: DType) -> (f64, f64) {
    let bytes = n * if dtype == DType::F32 { 4 } else { 2 };
    let src = vec![1u8; bytes];
    let alloc = median_ms(2, 10, || {
        std::hint::black_box(src.to_vec());
    });
    let mut dst = vec![0u8; bytes];
    let par = median_ms(2, 10, || {
        dst.par_chunks_mut(1 << 20)
            .zip(src.par_chunks(1 << 20))
            .for_each(|(d, s)| d.copy_from_slice(s));
    });
    let mut seq_dst = vec![0u8; bytes];
    let seq = median_ms(2, 10, || seq_dst.copy_from_slice(&src));
    std::hint::black_box((&dst, &seq_dst));
    (alloc, par.min(seq))
}

/// The forward kernel alone on host buffers already touched (no allocation, no page
/// faults): its distance to the prefaulted copy is the kernel's own overhead.
fn raw_kernel_ms(n: usize, dtype: DType, v: Variant, dims: &[usize], iters: usize) -> f64 {
    use avfuse_nn::dropout::kernel::apply;
    let op = v.params(0.5, v.layout(dims).expect("valid"), 1);
    if dtype == DType::F32 {
        let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
        let mut y = vec![0f32; n];
        median_ms(2, iters, || apply(&x, &mut y, &op))
    } else {
        let x: Vec<half::bf16> = (0..n)
            .map(|i| half::bf16::from_f32((i % 1000) as f32))
            .collect();
        let mut y = vec![half::bf16::ZERO; n];
        median_ms(2, iters, || apply(&x, &mut y, &op))
    }
}

fn time_variant<const D: usize>(
    x1: &Tensor<1>,
    g1: &Tensor<1>,
    ad: &Device,
    target: &Target,
    v: Variant,
    dims: &[usize],
    iters: usize,
) -> (f64, f64, f64) {
    let shape: [usize; D] = std::array::from_fn(|i| dims[i]);
    let x: Tensor<D> = x1.clone().reshape(shape);
    let g: Tensor<D> = g1.clone().reshape(shape);
    let mut seed = 0u64;
    let fwd = median_ms(2, iters, || {
        seed += 1;
        let y = run(x.clone(), v, seed);
        target.sync();
        std::hint::black_box(y);
    });
    // The backward kernel is the forward kernel's backward params on g: time the pair.
    let fb = median_ms(2, iters, || {
        seed += 1;
        let y = run(x.clone(), v, seed);
        let op = v
            .params(0.5, v.layout(&g.dims()).expect("valid"), seed)
            .backward();
        let dx = avfuse_nn::dropout::ext::masked_affine(g.clone(), op);
        target.sync();
        std::hint::black_box((y, dx));
    });
    // Through Burn's autodiff graph.
    let xa = Tensor::<D>::from_data(x.to_data(), ad).require_grad();
    let autodiff = median_ms(1, iters.min(5), || {
        seed += 1;
        let y = run(xa.clone(), v, seed);
        let grads = y.backward();
        let dx = xa.grad(&grads);
        target.sync();
        std::hint::black_box(dx);
    });
    (fwd, fb, autodiff)
}
