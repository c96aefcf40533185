//! The dropout family against PyTorch's own dropout tests (test/nn/test_dropout.py and the
//! `_test_dropout*` helpers of common_nn), one for one where they apply, plus the exact
//! alpha-dropout constants, mask shapes, finite-difference gradient checks and seeding.
//!
//! All tests run on Flex (Burn's CPU backend) with autodiff; every random input comes from
//! a seeded host generator and every mask from an explicit seed, so the suite is
//! deterministic. Tests that use the process-wide seed stream hold `STREAM`.

use std::sync::Mutex;

use avfuse_nn::dropout::{
    self, AlphaDropoutConfig, DropPathConfig, Dropout1dConfig, Dropout2dConfig, Dropout3dConfig,
    DropoutConfig, DropoutError, FeatureAlphaDropoutConfig, LockedDropoutConfig, TimeAxis, Variant,
    dropout_family,
};
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

static STREAM: Mutex<()> = Mutex::new(());

fn dev() -> Device {
    Device::flex().autodiff()
}

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            // Box-Muller.
            let u1: f64 = rng.random::<f64>().max(1e-300);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), &dev())
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 data")
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, var.sqrt())
}

/// A valid input shape for each variant, as a flat length plus dims.
fn shape_for(v: Variant) -> Vec<usize> {
    match v {
        Variant::Dropout | Variant::Alpha => vec![6, 5, 4],
        Variant::Dropout1d => vec![6, 5, 4],
        Variant::Dropout2d => vec![6, 5, 4, 3],
        Variant::Dropout3d | Variant::FeatureAlpha => vec![6, 5, 4, 3, 2],
        Variant::DropPath { .. } => vec![6, 5, 4],
        Variant::Locked(_) => vec![6, 5, 4],
    }
}

/// Run a variant on a flat input with a runtime rank (3, 4 or 5).
fn run_dyn(
    v: Variant,
    x: Vec<f32>,
    dims: &[usize],
    p: f64,
    training: bool,
    seed: u64,
) -> Result<Vec<f32>, DropoutError> {
    match dims.len() {
        1 => dropout_family(tensor(x, [dims[0]]), v, p, training, seed).map(values),
        2 => dropout_family(tensor(x, [dims[0], dims[1]]), v, p, training, seed).map(values),
        3 => {
            dropout_family(tensor(x, [dims[0], dims[1], dims[2]]), v, p, training, seed).map(values)
        }
        4 => dropout_family(
            tensor(x, [dims[0], dims[1], dims[2], dims[3]]),
            v,
            p,
            training,
            seed,
        )
        .map(values),
        5 => dropout_family(
            tensor(x, [dims[0], dims[1], dims[2], dims[3], dims[4]]),
            v,
            p,
            training,
            seed,
        )
        .map(values),
        r => panic!("test helper: rank {r}"),
    }
}

// ---- PyTorch test 1: alpha dropout keeps mean and std (test_AlphaDropout, test_FeatureAlphaDropout)

#[test]
fn alpha_dropout_keeps_mean_and_std() {
    let x = randn(5000, 1);
    let (m0, s0) = mean_std(&x);
    for (i, p) in [0.2, 0.5, 0.8].into_iter().enumerate() {
        let xt = tensor(x.clone(), [5000]).require_grad();
        let y = dropout_family(xt.clone(), Variant::Alpha, p, true, 100 + i as u64).unwrap();
        let yv = values(y.clone());
        let (m, s) = mean_std(&yv);
        assert!((m - m0).abs() < 0.1, "p {p}: mean {m} vs {m0}");
        assert!((s - s0).abs() < 0.1, "p {p}: std {s} vs {s0}");
        // Backward runs and gives a gradient of the input's shape.
        let grads = y.sum().backward();
        assert_eq!(xt.grad(&grads).expect("grad").dims(), [5000]);
    }
}

#[test]
fn feature_alpha_dropout_keeps_mean_and_std() {
    let shapes: [&[usize]; 2] = [&[1000, 2, 3, 4, 5], &[50, 20, 64, 64]];
    for (si, dims) in shapes.into_iter().enumerate() {
        let n: usize = dims.iter().product();
        let x = randn(n, 2 + si as u64);
        let (m0, s0) = mean_std(&x);
        for (i, p) in [0.2, 0.5, 0.8].into_iter().enumerate() {
            let y = run_dyn(
                Variant::FeatureAlpha,
                x.clone(),
                dims,
                p,
                true,
                7 * i as u64 + si as u64,
            )
            .unwrap();
            let (m, s) = mean_std(&y);
            assert!((m - m0).abs() < 0.1, "{dims:?} p {p}: mean {m} vs {m0}");
            assert!((s - s0).abs() < 0.1, "{dims:?} p {p}: std {s} vs {s0}");
        }
    }
}

// ---- PyTorch test 2: p in {0, 1}, train on/off, against the reference definition

#[test]
fn p_zero_and_one_match_the_reference_in_output_and_gradient() {
    for v in Variant::ALL {
        let dims = shape_for(v);
        let n: usize = dims.iter().product();
        let x = randn(n, 3);
        for p in [0.0, 1.0] {
            for training in [true, false] {
                let y = run_dyn(v, x.clone(), &dims, p, training, 5).unwrap();
                let want: Vec<f32> = if training && p == 1.0 {
                    vec![0.0; n]
                } else {
                    x.clone()
                };
                assert_eq!(y, want, "{v:?} p {p} training {training}");
            }
        }
        // Gradients: p = 1 in training gives a zero gradient, p = 0 the identity's.
        for (p, want) in [(1.0f64, 0.0f32), (0.0, 1.0)] {
            let xt = tensor(x.clone(), [n]).require_grad();
            let xs = xt
                .clone()
                .reshape([dims[0], dims[1], n / (dims[0] * dims[1])]);
            // A 3-D view every variant but Dropout2d/3d accepts; those get their own rank.
            let y = match v {
                Variant::Dropout2d => dropout_family(
                    xs.reshape([dims[0], dims[1], dims[2], n / (dims[0] * dims[1] * dims[2])]),
                    v,
                    p,
                    true,
                    1,
                )
                .unwrap()
                .sum(),
                Variant::Dropout3d => dropout_family(
                    xt.clone()
                        .reshape([dims[0], dims[1], dims[2], dims[3], dims[4]]),
                    v,
                    p,
                    true,
                    1,
                )
                .unwrap()
                .sum(),
                _ => dropout_family(xs, v, p, true, 1).unwrap().sum(),
            };
            let g = values(xt.grad(&y.backward()).expect("grad"));
            assert!(
                g.iter().all(|&gi| gi == want),
                "{v:?} p {p}: grad {:?}",
                &g[..4]
            );
        }
    }
}

// ---- PyTorch test 3: invalid p rejected, for every variant and the functions

#[test]
fn invalid_probability_is_rejected_with_pytorchs_message() {
    for p in [-0.1, 1.1, f64::NAN] {
        let msg = format!("dropout probability has to be between 0 and 1, but got {p}");
        let errs = [
            DropoutConfig::new(p).init().map(|_| ()).unwrap_err(),
            Dropout1dConfig::new(p).init().map(|_| ()).unwrap_err(),
            Dropout2dConfig::new(p).init().map(|_| ()).unwrap_err(),
            Dropout3dConfig::new(p).init().map(|_| ()).unwrap_err(),
            AlphaDropoutConfig::new(p).init().map(|_| ()).unwrap_err(),
            FeatureAlphaDropoutConfig::new(p)
                .init()
                .map(|_| ())
                .unwrap_err(),
            DropPathConfig::new(p).init().map(|_| ()).unwrap_err(),
            LockedDropoutConfig::new(p).init().map(|_| ()).unwrap_err(),
        ];
        for e in errs {
            assert_eq!(e.to_string(), msg);
        }
        for v in Variant::ALL {
            let dims = shape_for(v);
            let n = dims.iter().product();
            let e = run_dyn(v, vec![1.0; n], &dims, p, true, 0).unwrap_err();
            assert_eq!(e.to_string(), msg, "{v:?}");
            // Also when not training, as PyTorch checks p first.
            let e = run_dyn(v, vec![1.0; n], &dims, p, false, 0).unwrap_err();
            assert_eq!(e.to_string(), msg, "{v:?} eval");
        }
        assert!(dropout::dropout(tensor(vec![1.0; 4], [4]), p, true).is_err());
        assert!(dropout::alpha_dropout(tensor(vec![1.0; 4], [4]), p, false).is_err());
    }
}

// ---- PyTorch test 4: constant input 1-p: output and gradient means, eval identity (_test_dropout)

#[test]
fn constant_input_mean_gradient_mean_and_eval_identity() {
    let _g = STREAM.lock().unwrap_or_else(|e| e.into_inner());
    dropout::manual_seed(4);
    let p = 0.2;
    let fill = (1.0 - p) as f32;
    // The sizes PyTorch's test uses: (num_features,) up to (num_features, 5, 5, 5) variants.
    let cases: [(Variant, Vec<usize>); 4] = [
        (Variant::Dropout, vec![1000]),
        (Variant::Dropout1d, vec![50, 20, 10]),
        (Variant::Dropout2d, vec![50, 20, 5, 5]),
        (Variant::Dropout3d, vec![50, 20, 5, 5, 5]),
    ];
    for (v, dims) in cases {
        let n: usize = dims.iter().product();
        let xt = tensor(vec![fill; n], [n]).require_grad();
        let y = match dims.len() {
            1 => dropout_family(xt.clone(), v, p, true, dropout::next_seed()).unwrap(),
            3 => dropout_family(
                xt.clone().reshape([dims[0], dims[1], dims[2]]),
                v,
                p,
                true,
                dropout::next_seed(),
            )
            .unwrap()
            .reshape([n]),
            4 => dropout_family(
                xt.clone().reshape([dims[0], dims[1], dims[2], dims[3]]),
                v,
                p,
                true,
                dropout::next_seed(),
            )
            .unwrap()
            .reshape([n]),
            _ => dropout_family(
                xt.clone()
                    .reshape([dims[0], dims[1], dims[2], dims[3], dims[4]]),
                v,
                p,
                true,
                dropout::next_seed(),
            )
            .unwrap()
            .reshape([n]),
        };
        let (m, _) = mean_std(&values(y.clone()));
        assert!((m - (1.0 - p)).abs() < 0.05, "{v:?}: output mean {m}");
        // output.backward(input): grad = input * mask / (1-p).
        let upstream = tensor(vec![fill; n], [n]);
        let grads = (y * upstream).sum().backward();
        let (gm, _) = mean_std(&values(xt.grad(&grads).expect("grad")));
        assert!((gm - (1.0 - p)).abs() < 0.05, "{v:?}: grad mean {gm}");
        // Eval returns exactly the input.
        let e = run_dyn(v, vec![fill; n], &dims, p, false, 1).unwrap();
        assert!(e.iter().all(|&x| x == fill));
    }
    // The module on a non-autodiff device, or frozen by `valid`-style flag, is the identity.
    let layer = DropoutConfig::new(p).init().unwrap();
    let x = Tensor::<1>::from_data(TensorData::new(vec![fill; 100], [100]), &Device::flex());
    assert_eq!(values(layer.forward(x)), vec![fill; 100]);
}

// ---- PyTorch tests 5 and 6: non-contiguous / permuted inputs

#[test]
fn non_contiguous_inputs() {
    let x = randn(24 * 30, 6);
    let base = tensor(x, [24, 30]);
    let strided = base.clone().swap_dims(0, 1); // [30, 24], non-contiguous
    let want = values(strided.clone());
    // p = 0 and p = 1e-10: values unchanged.
    for p in [0.0, 1e-10] {
        let y = dropout_family(strided.clone(), Variant::Dropout, p, true, 3).unwrap();
        assert_eq!(values(y), want, "p {p}");
    }
    // Permuted layouts: mean(out) ~ mean(in) (rtol = atol = 0.5), out != in unless p ~ 0.
    let x4 = tensor(randn(2 * 3 * 4 * 5, 7), [2, 3, 4, 5]);
    for perm in [[0, 1, 2, 3], [0, 2, 3, 1], [3, 2, 1, 0], [1, 0, 3, 2]] {
        let xp = x4.clone().permute(perm);
        let xin = values(xp.clone());
        for (i, p) in [1e-10, 0.3, 0.5, 0.7].into_iter().enumerate() {
            let y =
                values(dropout_family(xp.clone(), Variant::Dropout, p, true, i as u64).unwrap());
            let (mi, _) = mean_std(&xin);
            let (mo, _) = mean_std(&y);
            assert!(
                (mo - mi).abs() <= 0.5 + 0.5 * mi.abs(),
                "perm {perm:?} p {p}: {mo} vs {mi}"
            );
            if p == 1e-10 {
                assert_eq!(y, xin);
            } else {
                assert_ne!(y, xin);
            }
        }
    }
}

// ---- PyTorch test 7: unbatched equals batched squeezed, with the same seed

#[test]
fn unbatched_equals_batched() {
    let x = randn(4 * 6, 8);
    let un = dropout_family(tensor(x.clone(), [4, 6]), Variant::Dropout1d, 0.5, true, 77).unwrap();
    let ba = dropout_family(
        tensor(x.clone(), [1, 4, 6]),
        Variant::Dropout1d,
        0.5,
        true,
        77,
    )
    .unwrap();
    assert_eq!(values(un), values(ba));
    let x = randn(4 * 2 * 3 * 3, 9);
    let un = dropout_family(
        tensor(x.clone(), [4, 2, 3, 3]),
        Variant::Dropout3d,
        0.5,
        true,
        78,
    )
    .unwrap();
    let ba = dropout_family(
        tensor(x, [1, 4, 2, 3, 3]),
        Variant::Dropout3d,
        0.5,
        true,
        78,
    )
    .unwrap();
    assert_eq!(values(un), values(ba));
}

// ---- PyTorch test 8: channel variants zero whole channels

#[test]
fn channel_variants_zero_whole_channels() {
    let cases: [(Variant, Vec<usize>); 4] = [
        (Variant::Dropout1d, vec![10, 4, 2]),
        (Variant::Dropout2d, vec![10, 4, 2, 2]),
        (Variant::Dropout3d, vec![10, 4, 2, 2, 2]),
        (Variant::FeatureAlpha, vec![10, 4, 2, 2, 2]),
    ];
    for (v, dims) in cases {
        let n: usize = dims.iter().product();
        let per = n / 40;
        let mut saw = [false; 2];
        for seed in 0..10 {
            let y = run_dyn(v, vec![1.0; n], &dims, 0.5, true, seed).unwrap();
            for ch in y.chunks(per) {
                let first = ch[0];
                assert!(
                    ch.iter().all(|&e| e == first),
                    "{v:?}: channel not uniform: {ch:?}"
                );
                saw[(first == 2.0 || (v == Variant::FeatureAlpha && first > 0.0)) as usize] = true;
            }
        }
        assert_eq!(
            saw,
            [true, true],
            "{v:?}: both kept and dropped channels occur"
        );
    }
    // Unbatched Dropout1d [C, L]: every channel uniform.
    let y = run_dyn(Variant::Dropout1d, vec![1.0; 40], &[8, 5], 0.5, true, 3).unwrap();
    for ch in y.chunks(5) {
        assert!(ch.iter().all(|&e| e == ch[0]));
    }
}

// ---- PyTorch test 9: empty tensors

#[test]
fn empty_tensors_pass_through() {
    for v in [
        Variant::Dropout,
        Variant::Dropout1d,
        Variant::Alpha,
        Variant::DropPath {
            scale_by_keep: true,
        },
    ] {
        let y = dropout_family(tensor(Vec::new(), [0, 3, 4]), v, 0.5, true, 1).unwrap();
        assert_eq!(y.dims(), [0, 3, 4]);
    }
    let y = dropout_family(
        tensor(Vec::new(), [2, 0, 4, 4]),
        Variant::Dropout2d,
        0.5,
        true,
        1,
    )
    .unwrap();
    assert_eq!(y.dims(), [2, 0, 4, 4]);
}

// ---- beyond PyTorch's tests

#[test]
fn wrong_ranks_are_clear_errors() {
    let e = run_dyn(
        Variant::Dropout1d,
        vec![0.0; 16],
        &[2, 2, 2, 2],
        0.5,
        true,
        0,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "Dropout1d: expected 2-D or 3-D input ([C, L] or [N, C, L]), but received a 4-D input"
    );
    let e = run_dyn(Variant::Dropout2d, vec![0.0; 8], &[2, 2, 2], 0.5, false, 0).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("Dropout2d: expected 4-D input [N, C, H, W]"),
        "{e}"
    );
    let e = run_dyn(Variant::Dropout3d, vec![0.0; 8], &[2, 2, 2], 0.5, true, 0).unwrap_err();
    assert!(e.to_string().contains("received a 3-D input"), "{e}");
    let l = Dropout2dConfig::new(0.5).init().unwrap();
    assert!(l.forward(tensor(vec![0.0; 8], [2, 2, 2])).is_err());
    let e = dropout_family(
        tensor(vec![0.0; 4], [4]),
        Variant::FeatureAlpha,
        0.5,
        true,
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("rank >= 2"), "{e}");
}

/// a = ((1-p)(1 + p alpha'^2))^(-1/2), b = -a alpha' p, dropped = a alpha' + b; the values
/// below were computed by hand (double precision) from these formulas.
#[test]
fn alpha_dropout_constants_are_exact() {
    let refs = [
        (
            0.2,
            0.8789035834435328,
            0.30903996214409446,
            -1.2361598485763778,
        ),
        (
            0.5,
            0.8864048946659319,
            0.7791939305180315,
            -0.7791939305180315,
        ),
        (
            0.8,
            1.1999121561207353,
            1.6876518166004955,
            -0.42191295415012364,
        ),
    ];
    for (p, a, b, dropped) in refs {
        let op =
            Variant::Alpha.params(p, avfuse_nn::dropout::kernel::MaskLayout::elementwise(1), 0);
        assert!(
            (op.kept_scale - a).abs() < 1e-15,
            "p {p}: a {}",
            op.kept_scale
        );
        assert!(
            (op.kept_bias - b).abs() < 1e-15,
            "p {p}: b {}",
            op.kept_bias
        );
        assert!(
            (op.dropped_value - dropped).abs() < 1e-15,
            "p {p}: c {}",
            op.dropped_value
        );
        // And the tensor values: kept a*x+b, dropped a*alpha'+b.
        let x = randn(2000, 10);
        let y = run_dyn(Variant::Alpha, x.clone(), &[40, 50], p, true, 3).unwrap();
        let mask = op_mask(Variant::Alpha, p, &[40, 50], 3);
        for i in 0..2000 {
            let want = if mask[i] == 1.0 {
                a as f32 * x[i] + b as f32
            } else {
                dropped as f32
            };
            assert!(
                (y[i] - want).abs() < 1e-6,
                "p {p} element {i}: {} vs {want}",
                y[i]
            );
        }
    }
    assert_eq!(dropout::ALPHA_PRIME, -1.7580993408473766);
}

fn op_mask(v: Variant, p: f64, dims: &[usize], seed: u64) -> Vec<f32> {
    v.params(p, v.layout(dims).unwrap(), seed).mask()
}

#[test]
fn drop_path_masks_whole_samples() {
    let dims = [16usize, 3, 4, 5];
    let n: usize = dims.iter().product();
    let per = n / 16;
    for scale in [true, false] {
        let v = Variant::DropPath {
            scale_by_keep: scale,
        };
        let y = run_dyn(v, vec![1.0; n], &dims, 0.25, true, 12).unwrap();
        let kept = if scale { 1.0 / 0.75 } else { 1.0 };
        let mut n_kept = 0;
        for s in y.chunks(per) {
            assert!(s.iter().all(|&e| e == s[0]), "sample not uniform");
            assert!(
                s[0] == 0.0 || (s[0] - kept as f32).abs() < 1e-6,
                "value {}",
                s[0]
            );
            n_kept += (s[0] != 0.0) as usize;
        }
        assert!(n_kept > 0 && n_kept < 16, "kept {n_kept}/16");
    }
    // Module default: scale_by_keep = true; identity in eval.
    let layer = DropPathConfig::new(0.25).init().unwrap();
    assert!(layer.scale_by_keep);
}

#[test]
fn locked_dropout_shares_one_mask_over_time() {
    let (t, b, h) = (7usize, 3usize, 20usize);
    // [T, B, H]
    let y = run_dyn(
        Variant::Locked(TimeAxis::TimeMajor),
        vec![1.0; t * b * h],
        &[t, b, h],
        0.5,
        true,
        5,
    )
    .unwrap();
    let step0 = &y[..b * h];
    for s in y.chunks(b * h) {
        assert_eq!(s, step0);
    }
    assert!(step0.contains(&0.0) && step0.contains(&2.0));
    // [B, T, H]: within each batch row the [H] mask is the same for every t.
    let y = run_dyn(
        Variant::Locked(TimeAxis::BatchMajor),
        vec![1.0; t * b * h],
        &[b, t, h],
        0.5,
        true,
        5,
    )
    .unwrap();
    for bi in 0..b {
        let row = &y[bi * t * h..(bi + 1) * t * h];
        for s in row.chunks(h) {
            assert_eq!(s, &row[..h]);
        }
    }
    // The two layouts draw the same [B, H] mask for the same seed.
    let tm = run_dyn(
        Variant::Locked(TimeAxis::TimeMajor),
        vec![1.0; b * h],
        &[1, b, h],
        0.5,
        true,
        9,
    )
    .unwrap();
    let bm = run_dyn(
        Variant::Locked(TimeAxis::BatchMajor),
        vec![1.0; b * h],
        &[b, 1, h],
        0.5,
        true,
        9,
    )
    .unwrap();
    assert_eq!(tm, bm);
}

/// Gradient = mask / (1 - p) for dropout; = a * mask for alpha dropout.
#[test]
fn gradient_is_the_scaled_mask() {
    let n = 3000;
    for (v, p) in [(Variant::Dropout, 0.3), (Variant::Alpha, 0.3)] {
        let xt = tensor(randn(n, 11), [n]).require_grad();
        let y = dropout_family(xt.clone(), v, p, true, 21).unwrap();
        let g = values(xt.grad(&y.sum().backward()).unwrap());
        let op = v.params(p, v.layout(&[n]).unwrap(), 21);
        let mask = op.mask();
        for i in 0..n {
            assert!(
                (g[i] - mask[i] * op.kept_scale as f32).abs() < 1e-6,
                "{v:?} element {i}"
            );
        }
    }
}

/// Central finite differences of `sum(w * f(x))` against the autodiff gradient, for every
/// variant (the map is affine in x for a fixed seed, so the check is tight).
#[test]
fn finite_difference_gradient_check() {
    for (vi, v) in Variant::ALL.into_iter().enumerate() {
        let dims = match v {
            Variant::Dropout2d => vec![3, 4, 2, 2],
            Variant::Dropout3d | Variant::FeatureAlpha => vec![3, 4, 2, 2, 1],
            _ => vec![3, 4, 4],
        };
        let n: usize = dims.iter().product();
        let x = randn(n, 30 + vi as u64);
        let w = randn(n, 60 + vi as u64);
        let seed = 90 + vi as u64;
        let f = |xv: Vec<f32>| -> f64 {
            let y = run_dyn(v, xv, &dims, 0.4, true, seed).unwrap();
            y.iter().zip(&w).map(|(a, b)| *a as f64 * *b as f64).sum()
        };
        // Autodiff gradient.
        let xt = tensor(x.clone(), [n]).require_grad();
        let y = match dims.len() {
            3 => dropout_family(
                xt.clone().reshape([dims[0], dims[1], dims[2]]),
                v,
                0.4,
                true,
                seed,
            )
            .unwrap()
            .reshape([n]),
            4 => dropout_family(
                xt.clone().reshape([dims[0], dims[1], dims[2], dims[3]]),
                v,
                0.4,
                true,
                seed,
            )
            .unwrap()
            .reshape([n]),
            _ => dropout_family(
                xt.clone()
                    .reshape([dims[0], dims[1], dims[2], dims[3], dims[4]]),
                v,
                0.4,
                true,
                seed,
            )
            .unwrap()
            .reshape([n]),
        };
        let g = values(
            xt.grad(&(y * tensor(w.clone(), [n])).sum().backward())
                .unwrap(),
        );
        let eps = 1e-2f32;
        for i in 0..n {
            let mut xp = x.clone();
            xp[i] += eps;
            let mut xm = x.clone();
            xm[i] -= eps;
            let fd = (f(xp) - f(xm)) / (2.0 * eps as f64);
            assert!(
                (fd - g[i] as f64).abs() < 2e-3,
                "{v:?} element {i}: fd {fd} autodiff {}",
                g[i]
            );
        }
    }
}

#[test]
fn seeded_stream_is_reproducible() {
    let _g = STREAM.lock().unwrap_or_else(|e| e.into_inner());
    let run = || {
        dropout::manual_seed(123);
        let l = DropoutConfig::new(0.5).init().unwrap();
        let a = values(l.forward(tensor(vec![1.0; 512], [512])));
        let b = values(l.forward(tensor(vec![1.0; 512], [512])));
        (a, b)
    };
    let (a1, b1) = run();
    let (a2, b2) = run();
    assert_eq!(a1, a2);
    assert_eq!(b1, b2);
    assert_ne!(a1, b1, "two calls draw two masks");
    dropout::manual_seed(124);
    let l = DropoutConfig::new(0.5).init().unwrap();
    assert_ne!(values(l.forward(tensor(vec![1.0; 512], [512]))), a1);
}

#[test]
fn modules_apply_only_in_training_on_autodiff_devices() {
    let _g = STREAM.lock().unwrap_or_else(|e| e.into_inner());
    dropout::manual_seed(5);
    let x = || tensor(vec![1.0; 2 * 3 * 4 * 4], [2, 3, 4, 4]);
    let d2 = Dropout2dConfig::new(0.5).init().unwrap();
    let y = values(d2.forward(x()).unwrap());
    assert!(y.contains(&0.0) && y.contains(&2.0));
    let plain = Tensor::<4>::from_data(
        TensorData::new(vec![1.0f32; 96], [2, 3, 4, 4]),
        &Device::flex(),
    );
    assert_eq!(values(d2.forward(plain).unwrap()), vec![1.0; 96]);
    let a = AlphaDropoutConfig::new(0.5).init().unwrap();
    assert_ne!(values(a.forward(x())), vec![1.0; 96]);
    let l = LockedDropoutConfig::new(0.5).init().unwrap();
    assert!(!l.time_major);
    assert_eq!(
        l.forward(tensor(vec![1.0; 24], [2, 3, 4])).dims(),
        [2, 3, 4]
    );
    let fa = FeatureAlphaDropoutConfig::new(0.2).init().unwrap();
    assert_eq!(fa.forward(x()).unwrap().dims(), [2, 3, 4, 4]);
    let d1 = Dropout1dConfig::new(0.2).init().unwrap();
    assert!(d1.forward(x()).is_err());
    let d3 = Dropout3dConfig::new(0.2).init().unwrap();
    assert!(d3.forward(x()).is_ok(), "unbatched [C, D, H, W]");
}

/// The portable path (host mask + tensor ops, used on devices without the native kernel)
/// gives the same values and gradients as the native Flex kernel.
#[test]
fn portable_path_matches_native_kernel() {
    for v in [
        Variant::Dropout,
        Variant::Alpha,
        Variant::Dropout1d,
        Variant::Locked(TimeAxis::BatchMajor),
    ] {
        let x = randn(5 * 6 * 7, 40);
        let op = v.params(0.35, v.layout(&[5, 6, 7]).unwrap(), 17);
        let xa = tensor(x.clone(), [5, 6, 7]).require_grad();
        let xb = tensor(x, [5, 6, 7]).require_grad();
        let ya = dropout::ext::masked_affine(xa.clone(), op);
        let yb = dropout::ext::masked_affine_portable(xb.clone(), op);
        let (va, vb) = (values(ya.clone()), values(yb.clone()));
        for (a, b) in va.iter().zip(&vb) {
            assert!((a - b).abs() < 1e-6, "{v:?}: {a} vs {b}");
        }
        let ga = values(xa.grad(&ya.sum().backward()).unwrap());
        let gb = values(xb.grad(&yb.sum().backward()).unwrap());
        assert_eq!(ga, gb, "{v:?} gradients");
    }
}

/// A view that keeps the start of a bigger buffer (and owns it alone) is handled: only its
/// own elements are touched, in place or not.
#[test]
fn views_of_a_larger_buffer() {
    let x = randn(8 * 6, 50);
    let view = tensor(x.clone(), [8, 6]).narrow(0, 0, 3); // the [8, 6] tensor is consumed
    let copy = tensor(x[..18].to_vec(), [3, 6]);
    for v in [Variant::Dropout, Variant::Dropout1d, Variant::Alpha] {
        let a = dropout_family(view.clone(), v, 0.5, true, 4).unwrap();
        let b = dropout_family(copy.clone(), v, 0.5, true, 4).unwrap();
        assert_eq!(a.dims(), [3, 6]);
        assert_eq!(values(a), values(b), "{v:?}");
    }
    // Unique owner: the in-place path.
    let alone = tensor(x.clone(), [8, 6]).narrow(0, 0, 3);
    let a = dropout_family(alone, Variant::Dropout, 0.5, true, 4).unwrap();
    let b = dropout_family(copy, Variant::Dropout, 0.5, true, 4).unwrap();
    assert_eq!(values(a), values(b));
    // A view that does not start the buffer (copied to contiguous first).
    let tail = tensor(x.clone(), [8, 6]).narrow(0, 5, 3);
    let want = tensor(x[30..].to_vec(), [3, 6]);
    let a = dropout_family(tail, Variant::Dropout, 0.5, true, 4).unwrap();
    let b = dropout_family(want, Variant::Dropout, 0.5, true, 4).unwrap();
    assert_eq!(values(a), values(b));
}
