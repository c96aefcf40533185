//! The CubeCL kernel of the dropout family (`src/dropout/cube.rs`) against the Flex kernel.
//!
//! Runs on a wgpu device, which on a machine without a GPU is Mesa's lavapipe (a Vulkan
//! driver on the CPU; Debian package `mesa-vulkan-drivers`, installed by `scripts/test.sh`).
//! The same CubeCL source is what CUDA compiles, so this checks the kernel's logic (mask
//! indexing, hash, thresholds, vector lanes, in place or not, the Fusion wrapper and the
//! Autodiff backward) without a GPU. Only built with `--features avfuse-nn/wgpu`.
//!
//! Every mask comes from an explicit seed and every input from a seeded generator.
#![cfg(feature = "wgpu")]

use avfuse_nn::dropout::{
    Variant, dropout_family,
    ext::masked_affine,
    kernel::{MaskLayout, MaskedAffine},
};
use burn::backend::DispatchDevice;
use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gpu() -> Device {
    let d = Device::wgpu(DeviceKind::DefaultDevice);
    assert!(
        matches!(d.as_dispatch(), DispatchDevice::Cube(_)),
        "the wgpu device is a CubeCL device"
    );
    d
}

fn cpu() -> Device {
    Device::flex()
}

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-3.0f32..3.0)).collect()
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// `a` and `b` agree: the same entries dropped (equal to the dropped value exactly) and kept
/// values within 2 ulp (a GPU compiler may fuse `a * x + b` into one FMA).
fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let tol = 2.0 * f32::EPSILON * x.abs().max(y.abs()).max(1e-30);
        assert!(
            x == y || (x - y).abs() <= tol,
            "{what}: element {i}: gpu {x} vs cpu {y}"
        );
    }
}

fn shape_for(v: Variant) -> [usize; 5] {
    match v {
        // [N, C, D, H, W], reshaped by `run` to the rank each variant takes; odd extents so
        // the element count is not a multiple of the vector width.
        Variant::Dropout1d => [3, 7, 33, 1, 1],
        _ => [3, 7, 5, 3, 11],
    }
}

fn run(v: Variant, x: Vec<f32>, shape: [usize; 5], p: f64, seed: u64, device: &Device) -> Vec<f32> {
    match v {
        Variant::Dropout1d => {
            let t = tensor(x, [shape[0], shape[1], shape[2]], device);
            values(dropout_family(t, v, p, true, seed).expect("valid input"))
        }
        Variant::Dropout2d => {
            let t = tensor(
                x,
                [shape[0], shape[1], shape[2], shape[3] * shape[4]],
                device,
            );
            values(dropout_family(t, v, p, true, seed).expect("valid input"))
        }
        Variant::Locked(_) => {
            let t = tensor(
                x,
                [shape[0] * shape[1], shape[2], shape[3] * shape[4]],
                device,
            );
            values(dropout_family(t, v, p, true, seed).expect("valid input"))
        }
        _ => {
            let t = tensor(x, shape, device);
            values(dropout_family(t, v, p, true, seed).expect("valid input"))
        }
    }
}

/// Every variant, several probabilities: the GPU kernel drops exactly the entries the CPU
/// kernel drops and computes the same kept values.
#[test]
fn every_variant_matches_the_cpu_kernel() {
    for (k, v) in Variant::ALL.into_iter().enumerate() {
        for (j, p) in [0.1, 0.5, 0.9].into_iter().enumerate() {
            let shape = shape_for(v);
            let n: usize = shape.iter().product();
            let x = randn(n, 100 + k as u64);
            let seed = 7 + 31 * k as u64 + j as u64;
            let g = run(v, x.clone(), shape, p, seed, &gpu());
            let c = run(v, x, shape, p, seed, &cpu());
            assert_close(&g, &c, &format!("{v:?} p={p}"));
        }
    }
}

/// Element counts that are and are not multiples of every vector width, and one of several
/// vector widths' worth of units: lanes map to the right mask indices.
#[test]
fn vector_widths_and_ragged_lengths() {
    for n in [1usize, 3, 4, 8, 1001, 4096, 65_537, 1 << 20] {
        let x = randn(n, n as u64);
        let op = MaskedAffine {
            layout: MaskLayout::elementwise(n),
            seed: 99,
            threshold: MaskedAffine::threshold_for(0.6),
            kept_scale: 1.0 / 0.6,
            kept_bias: 0.0,
            dropped_value: 0.0,
        };
        let g = values(masked_affine(tensor(x.clone(), [n], &gpu()), op));
        let c = values(masked_affine(tensor(x, [n], &cpu()), op));
        assert_close(&g, &c, &format!("n={n}"));
        let mask = op.mask();
        for (i, (&y, &m)) in g.iter().zip(&mask).enumerate() {
            assert_eq!(
                y == 0.0,
                m == 0.0,
                "n={n}: element {i} against the host mask"
            );
        }
    }
}

/// Thresholds at the ends: keep-all (2^32) and drop-all (0) with a non-zero dropped value,
/// and a general `[outer, bcast, inner]` layout with bias.
#[test]
fn threshold_extremes_and_general_layout() {
    let layout = MaskLayout {
        outer: 5,
        bcast: 3,
        inner: 7,
    };
    let n = layout.numel();
    let x = randn(n, 5);
    for threshold in [0u64, 1, 1 << 31, u32::MAX as u64, 1 << 32] {
        let op = MaskedAffine {
            layout,
            seed: 1234,
            threshold,
            kept_scale: 1.5,
            kept_bias: -0.25,
            dropped_value: 0.75,
        };
        let g = values(masked_affine(tensor(x.clone(), [5, 3, 7], &gpu()), op));
        let c = values(masked_affine(tensor(x.clone(), [5, 3, 7], &cpu()), op));
        assert_close(&g, &c, &format!("threshold {threshold}"));
    }
}

/// A shared input buffer is not overwritten (out-of-place path) and a sole owner gives the
/// same result (in-place path); a transposed view is read in logical order.
#[test]
fn in_place_out_of_place_and_views() {
    let x = randn(6 * 10, 3);
    let op = MaskedAffine {
        layout: MaskLayout::elementwise(60),
        seed: 5,
        threshold: MaskedAffine::threshold_for(0.5),
        kept_scale: 2.0,
        kept_bias: 0.0,
        dropped_value: 0.0,
    };
    let shared = tensor(x.clone(), [6, 10], &gpu());
    let out = values(masked_affine(shared.clone(), op));
    assert_eq!(values(shared), x, "the shared input is untouched");
    let alone = values(masked_affine(tensor(x.clone(), [6, 10], &gpu()), op));
    assert_eq!(out, alone);

    let t = tensor(x.clone(), [10, 6], &gpu()).transpose();
    let tc = tensor(x, [10, 6], &cpu()).transpose();
    assert_close(
        &values(masked_affine(t, op)),
        &values(masked_affine(tc, op)),
        "transposed view",
    );
}

/// Fused with the operations around it (Fusion's lazy graph): the same as on the CPU.
#[test]
fn inside_a_fused_graph() {
    let x = randn(4 * 9 * 13, 8);
    let f = |d: &Device| {
        let t = tensor(x.clone(), [4, 9, 13], d);
        let t = (t * 2.0 + 1.0).exp().log(); // elementwise ops Fusion merges
        let y = dropout_family(t, Variant::Dropout, 0.3, true, 77).expect("valid");
        values((y - 0.5).abs())
    };
    let (g, c) = (f(&gpu()), f(&cpu()));
    for (i, (a, b)) in g.iter().zip(&c).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs().max(1.0),
            "element {i}: {a} vs {b}"
        );
    }
}

/// The Autodiff backward regenerates the mask on the GPU: `dx = keep ? scale * dy : 0`.
#[test]
fn backward_matches_the_cpu() {
    for v in [Variant::Dropout, Variant::Alpha, Variant::Dropout2d] {
        let x = randn(2 * 3 * 4 * 5, 11);
        let w = randn(2 * 3 * 4 * 5, 12);
        let grads = |d: Device| {
            let d = d.autodiff();
            let xt = tensor(x.clone(), [2, 3, 4, 5], &d).require_grad();
            let wt = tensor(w.clone(), [2, 3, 4, 5], &d);
            let y = dropout_family(xt.clone(), v, 0.4, true, 21).expect("valid");
            let g = (y * wt).sum().backward();
            values(xt.grad(&g).expect("x has a gradient"))
        };
        assert_close(&grads(gpu()), &grads(cpu()), &format!("{v:?} gradient"));
    }
}
