//! MaskedBatchNorm (design section 2.3) against PyTorch reference values.
//!
//! `tests/fixtures/masked_batch_norm.json` is written by
//! `scripts/fixtures/make_masked_bn_fixtures.py` (torch only): for `[B, C]`, `[B, C, L]`,
//! `[B, C, H, W]` and `[B, C, D, H, W]` inputs and four presence patterns (some absent, all
//! present, exactly one present, none present), `nn.BatchNorm{1,2,3}d` in train mode run on
//! the present subset: output, input gradient for a fixed upstream gradient, gamma/beta
//! gradients, running statistics after one and two steps, and the eval output.

use std::path::PathBuf;

use avfuse_nn::{MaskedBatchNorm, MaskedBatchNormConfig, MaskedBatchNormError};
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};

const TOL: f32 = 1e-5;

#[derive(Config, Debug)]
struct Fixture {
    torch: String,
    epsilon: f64,
    momentum: f64,
    shapes: Vec<ShapeFixture>,
}

#[derive(Config, Debug)]
struct ShapeFixture {
    name: String,
    module: String,
    shape: Vec<usize>,
    x: Vec<f32>,
    x2: Vec<f32>,
    g: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    cases: Vec<CaseFixture>,
}

#[derive(Config, Debug)]
struct CaseFixture {
    pattern: String,
    presence: Vec<f32>,
    y: Vec<f32>,
    dx: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    running_mean_1: Vec<f32>,
    running_var_1: Vec<f32>,
    running_mean_2: Vec<f32>,
    running_var_2: Vec<f32>,
    y_eval: Vec<f32>,
}

fn fixture() -> Fixture {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/masked_batch_norm.json");
    Fixture::load(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn vec_of<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn tensor<const D: usize>(values: &[f32], shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

/// `|got - want| <= TOL * max(1, |want|)` element-wise (absolute near zero, relative above 1).
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() && (g - w).abs() <= TOL * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Element `i` of a `[B, ...]` tensor of `len` elements belongs to sample `i / (len / B)`.
fn sample_of(i: usize, len: usize, batch: usize) -> usize {
    i / (len / batch)
}

/// Present positions within tolerance, absent positions exactly zero.
fn assert_masked(what: &str, got: &[f32], want: &[f32], presence: &[f32]) {
    assert_close(what, got, want);
    let batch = presence.len();
    for (i, &g) in got.iter().enumerate() {
        if presence[sample_of(i, got.len(), batch)] == 0.0 {
            assert_eq!(
                g, 0.0,
                "{what}[{i}] belongs to an absent sample and must be 0"
            );
        }
    }
}

fn layer(shape: &ShapeFixture, fx: &Fixture, device: &Device) -> MaskedBatchNorm {
    let c = shape.shape[1];
    let mut bn = MaskedBatchNormConfig::new(c)
        .with_epsilon(fx.epsilon)
        .with_momentum(fx.momentum)
        .init(device);
    bn.gamma = Param::from_tensor(tensor(&shape.gamma, [c], device));
    bn.beta = Param::from_tensor(tensor(&shape.beta, [c], device));
    bn
}

fn check_case<const D: usize>(fx: &Fixture, sh: &ShapeFixture, case: &CaseFixture) {
    let dims: [usize; D] = sh.shape.clone().try_into().unwrap();
    let what = |field: &str| format!("{} / {}: {field}", sh.name, case.pattern);
    let device = Device::flex().autodiff();
    let bn = layer(sh, fx, &device);
    let batch = dims[0];
    let presence = tensor(&case.presence, [batch], &device);

    // Step 1: training forward + backward.
    let x = tensor(&sh.x, dims, &device).require_grad();
    let g = tensor(&sh.g, dims, &device);
    let y = bn.forward(x.clone(), presence.clone());
    let grads = (y.clone() * g).sum().backward();
    assert_masked(&what("y"), &vec_of(y), &case.y, &case.presence);
    let dx = vec_of(x.grad(&grads).expect("x has a gradient"));
    assert_masked(&what("dx"), &dx, &case.dx, &case.presence);
    let dgamma = vec_of(bn.gamma.val().grad(&grads).expect("gamma has a gradient"));
    let dbeta = vec_of(bn.beta.val().grad(&grads).expect("beta has a gradient"));
    assert_close(&what("dgamma"), &dgamma, &case.dgamma);
    assert_close(&what("dbeta"), &dbeta, &case.dbeta);
    assert_close(
        &what("running_mean_1"),
        &vec_of(bn.running_mean.value_sync()),
        &case.running_mean_1,
    );
    assert_close(
        &what("running_var_1"),
        &vec_of(bn.running_var.value_sync()),
        &case.running_var_1,
    );

    // Step 2: another batch, same presence.
    let _ = bn.forward(tensor(&sh.x2, dims, &device), presence.clone());
    assert_close(
        &what("running_mean_2"),
        &vec_of(bn.running_mean.value_sync()),
        &case.running_mean_2,
    );
    assert_close(
        &what("running_var_2"),
        &vec_of(bn.running_var.value_sync()),
        &case.running_var_2,
    );

    // Eval: `valid()` (plain device, flag off) and a frozen layer on the autodiff device.
    let eval = bn.valid();
    let plain = Device::flex();
    let y_eval = eval.forward(
        tensor(&sh.x, dims, &plain),
        tensor(&case.presence, [batch], &plain),
    );
    assert_masked(
        &what("y_eval"),
        &vec_of(y_eval),
        &case.y_eval,
        &case.presence,
    );
    let frozen = bn.freeze();
    let y_frozen = frozen.forward(tensor(&sh.x, dims, &device), presence);
    assert_masked(
        &what("y_eval (frozen)"),
        &vec_of(y_frozen),
        &case.y_eval,
        &case.presence,
    );
    assert_close(
        &what("running_mean after eval"),
        &vec_of(frozen.running_mean.value_sync()),
        &case.running_mean_2,
    );
}

fn check_shape(fx: &Fixture, sh: &ShapeFixture) {
    assert_eq!(sh.cases.len(), 4, "{}: four presence patterns", sh.name);
    for case in &sh.cases {
        match sh.shape.len() {
            2 => check_case::<2>(fx, sh, case),
            3 => check_case::<3>(fx, sh, case),
            4 => check_case::<4>(fx, sh, case),
            5 => check_case::<5>(fx, sh, case),
            r => panic!("unexpected rank {r}"),
        }
    }
}

fn shape<'a>(fx: &'a Fixture, name: &str) -> &'a ShapeFixture {
    fx.shapes
        .iter()
        .find(|s| s.name == name)
        .expect("shape in fixture")
}

#[test]
fn fixture_is_complete() {
    let fx = fixture();
    assert!(fx.torch.starts_with("2."), "made with torch {}", fx.torch);
    let names: Vec<_> = fx
        .shapes
        .iter()
        .map(|s| (s.name.as_str(), s.module.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("1d_bc", "BatchNorm1d"),
            ("1d_bcl", "BatchNorm1d"),
            ("2d", "BatchNorm2d"),
            ("3d", "BatchNorm3d")
        ]
    );
    for sh in &fx.shapes {
        let patterns: Vec<_> = sh.cases.iter().map(|c| c.pattern.as_str()).collect();
        assert_eq!(
            patterns,
            ["some_absent", "all_present", "one_present", "none_present"]
        );
    }
}

#[test]
fn matches_pytorch_batchnorm1d_on_bc() {
    let fx = fixture();
    check_shape(&fx, shape(&fx, "1d_bc"));
}

#[test]
fn matches_pytorch_batchnorm1d_on_bcl() {
    let fx = fixture();
    check_shape(&fx, shape(&fx, "1d_bcl"));
}

#[test]
fn matches_pytorch_batchnorm2d() {
    let fx = fixture();
    check_shape(&fx, shape(&fx, "2d"));
}

#[test]
fn matches_pytorch_batchnorm3d() {
    let fx = fixture();
    check_shape(&fx, shape(&fx, "3d"));
}

/// With every sample present the layer is plain PyTorch BatchNorm (unbiased running var),
/// also through `forward_all_present`.
#[test]
fn all_present_is_plain_pytorch_batch_norm() {
    let fx = fixture();
    let device = Device::flex().autodiff();
    for sh in &fx.shapes {
        let case = sh
            .cases
            .iter()
            .find(|c| c.pattern == "all_present")
            .unwrap();
        assert!(case.presence.iter().all(|&p| p == 1.0));
        let bn = layer(sh, &fx, &device);
        let y = match sh.shape.len() {
            2 => vec_of(bn.forward_all_present(tensor::<2>(
                &sh.x,
                sh.shape.clone().try_into().unwrap(),
                &device,
            ))),
            3 => vec_of(bn.forward_all_present(tensor::<3>(
                &sh.x,
                sh.shape.clone().try_into().unwrap(),
                &device,
            ))),
            4 => vec_of(bn.forward_all_present(tensor::<4>(
                &sh.x,
                sh.shape.clone().try_into().unwrap(),
                &device,
            ))),
            _ => vec_of(bn.forward_all_present(tensor::<5>(
                &sh.x,
                sh.shape.clone().try_into().unwrap(),
                &device,
            ))),
        };
        assert_close(&format!("{} all present: y", sh.name), &y, &case.y);
        assert_close(
            &format!("{} all present: running_var (unbiased)", sh.name),
            &vec_of(bn.running_var.value_sync()),
            &case.running_var_1,
        );
    }
}

/// Burn's own BatchNorm stores the biased running variance; ours the unbiased one. Their
/// training outputs agree.
#[test]
fn training_output_equals_burn_batch_norm_and_running_var_is_unbiased() {
    let device = Device::flex().autodiff();
    let data: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 * 0.3 - 1.0).collect();
    let x = tensor(&data, [4, 3, 2], &device);
    let ours = MaskedBatchNormConfig::new(3).init(&device);
    let burn_bn = BatchNormConfig::new(3).init(&device);
    let y_ours = vec_of(ours.forward_all_present(x.clone()));
    let y_burn = vec_of(burn_bn.forward(x));
    assert_close("y vs burn", &y_ours, &y_burn);
    let mean_ours = vec_of(ours.running_mean.value_sync());
    let mean_burn = vec_of(burn_bn.running_mean.value_sync());
    assert_close("running_mean vs burn", &mean_ours, &mean_burn);
    // running_var = 0.9 + 0.1 v: ours uses v * n/(n-1) with n = 8.
    let var_ours = vec_of(ours.running_var.value_sync());
    let var_burn = vec_of(burn_bn.running_var.value_sync());
    for (o, b) in var_ours.iter().zip(&var_burn) {
        let biased = (b - 0.9) / 0.1;
        let want = 0.9 + 0.1 * biased * 8.0 / 7.0;
        assert!((o - want).abs() < 1e-5, "running var {o} vs {want}");
    }
}

#[test]
fn no_present_sample_gives_zeros_and_no_nan() {
    let device = Device::flex().autodiff();
    let bn = MaskedBatchNormConfig::new(2).init(&device);
    let mut gamma = vec_of(bn.gamma.val());
    gamma[1] = 3.0;
    let bn = MaskedBatchNorm {
        gamma: Param::from_tensor(tensor(&gamma, [2], &device)),
        beta: Param::from_tensor(tensor(&[0.5, -0.5], [2], &device)),
        ..bn
    };
    let x = tensor(
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        [2, 2, 2],
        &device,
    )
    .require_grad();
    let presence = Tensor::<1>::zeros([2], &device);
    let y = bn.forward(x.clone(), presence);
    let grads = (y.clone() * 1.5).sum().backward();
    assert!(vec_of(y).iter().all(|&v| v == 0.0));
    for g in [
        vec_of(x.grad(&grads).unwrap()),
        vec_of(bn.gamma.val().grad(&grads).unwrap()),
        vec_of(bn.beta.val().grad(&grads).unwrap()),
    ] {
        assert!(g.iter().all(|&v| v == 0.0), "gradient {g:?}");
    }
    assert_eq!(vec_of(bn.running_mean.value_sync()), [0.0, 0.0]);
    assert_eq!(vec_of(bn.running_var.value_sync()), [1.0, 1.0]);
}

#[test]
fn one_present_sample_skips_the_running_update() {
    let device = Device::flex().autodiff();
    let bn = MaskedBatchNormConfig::new(2).init(&device);
    let x = tensor(
        &[
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
        ],
        [3, 2, 2],
        &device,
    );
    let presence = tensor(&[0.0, 1.0, 0.0], [3], &device);
    let y = vec_of(bn.forward(x, presence));
    assert!(y.iter().all(|v| v.is_finite()));
    assert_eq!(vec_of(bn.running_mean.value_sync()), [0.0, 0.0]);
    assert_eq!(vec_of(bn.running_var.value_sync()), [1.0, 1.0]);
}

#[test]
fn shape_errors_are_reported() {
    let device = Device::flex();
    let bn = MaskedBatchNormConfig::new(3).init(&device);
    let x = Tensor::<3>::zeros([4, 3, 2], &device);
    assert_eq!(
        bn.try_forward(x.clone(), Tensor::zeros([3], &device))
            .unwrap_err(),
        MaskedBatchNormError::PresenceLength {
            presence: 3,
            batch: 4
        }
    );
    assert_eq!(
        bn.try_forward(
            Tensor::<2>::zeros([4, 2], &device),
            Tensor::zeros([4], &device)
        )
        .unwrap_err(),
        MaskedBatchNormError::ChannelMismatch {
            expected: 3,
            got: 2
        }
    );
    assert_eq!(
        bn.try_forward(
            Tensor::<1>::zeros([4], &device),
            Tensor::zeros([4], &device)
        )
        .unwrap_err(),
        MaskedBatchNormError::RankTooLow { rank: 1 }
    );
    let err = MaskedBatchNormError::PresenceLength {
        presence: 3,
        batch: 4,
    };
    assert_eq!(
        err.to_string(),
        "presence has 3 entries but the batch has 4 samples"
    );
    assert!(bn.try_forward(x, Tensor::ones([4], &device)).is_ok());
}

#[test]
#[should_panic(expected = "presence has 5 entries but the batch has 4 samples")]
fn forward_panics_on_presence_length() {
    let device = Device::flex();
    let bn = MaskedBatchNormConfig::new(3).init(&device);
    bn.forward(
        Tensor::<2>::zeros([4, 3], &device),
        Tensor::zeros([5], &device),
    );
}

#[test]
#[should_panic(expected = "momentum must be finite and within [0, 1].")]
fn bad_momentum_is_rejected() {
    MaskedBatchNormConfig::new(3)
        .with_momentum(1.5)
        .init(&Device::flex());
}

fn record_values(bn: &MaskedBatchNorm) -> Vec<Vec<f32>> {
    vec![
        vec_of(bn.gamma.val()),
        vec_of(bn.beta.val()),
        vec_of(bn.running_mean.value_sync()),
        vec_of(bn.running_var.value_sync()),
    ]
}

/// A record of Burn's BatchNorm loads into MaskedBatchNorm and back (same field names),
/// in memory and through burnpack bytes.
#[test]
fn records_are_interchangeable_with_burn_batch_norm() {
    let device = Device::flex();
    let c = 3;
    let burn_bn = BatchNormConfig::new(c).init(&device);
    let burn_bn = BatchNorm {
        gamma: Param::from_tensor(tensor(&[0.5, 1.5, 2.5], [c], &device)),
        beta: Param::from_tensor(tensor(&[-1.0, 0.0, 1.0], [c], &device)),
        ..burn_bn
    };
    burn_bn
        .running_mean
        .update(tensor(&[0.1, 0.2, 0.3], [c], &device));
    burn_bn
        .running_var
        .update(tensor(&[1.1, 1.2, 1.3], [c], &device));
    // `update` parks the value per thread; a record reads the synced value (Burn's design).
    let _ = (
        burn_bn.running_mean.value_sync(),
        burn_bn.running_var.value_sync(),
    );
    let expected = vec![
        vec![0.5, 1.5, 2.5],
        vec![-1.0, 0.0, 1.0],
        vec![0.1, 0.2, 0.3],
        vec![1.1, 1.2, 1.3],
    ];

    // In memory.
    let ours = MaskedBatchNormConfig::new(c)
        .init(&device)
        .load_record(burn_bn.clone().into_record());
    assert_eq!(record_values(&ours), expected);

    // Through burnpack bytes.
    let bytes = burn_bn.into_record().into_bytes().unwrap();
    let ours = MaskedBatchNormConfig::new(c)
        .init(&device)
        .try_load_record(ModuleRecord::from_bytes(bytes).unwrap())
        .unwrap();
    assert_eq!(record_values(&ours), expected);

    // And back into Burn's BatchNorm.
    let bytes = ours.into_record().into_bytes().unwrap();
    let back = BatchNormConfig::new(c)
        .init(&device)
        .try_load_record(ModuleRecord::from_bytes(bytes).unwrap())
        .unwrap();
    assert_eq!(vec_of(back.gamma.val()), expected[0]);
    assert_eq!(vec_of(back.beta.val()), expected[1]);
    assert_eq!(vec_of(back.running_mean.value_sync()), expected[2]);
    assert_eq!(vec_of(back.running_var.value_sync()), expected[3]);
}

#[derive(Module, Debug)]
struct Tiny {
    encoder: Linear,
    norm: MaskedBatchNorm,
    head: Linear,
}

impl Tiny {
    fn forward(&self, x: Tensor<2>, presence: Tensor<1>) -> Tensor<2> {
        let h = self.norm.forward(self.encoder.forward(x), presence);
        self.head.forward(burn::tensor::activation::relu(h))
    }
}

/// The layer inside a tiny model trains with AdamW without NaN, also for batches with one or
/// no present sample, and its parameters and running statistics move.
#[test]
fn tiny_model_trains_with_adamw() {
    let device = Device::flex().autodiff();
    let mut model = Tiny {
        encoder: LinearConfig::new(4, 6).init(&device),
        norm: MaskedBatchNormConfig::new(6).init(&device),
        head: LinearConfig::new(6, 1).init(&device),
    };
    let mut optim = AdamWConfig::new().init();
    let x: Vec<f32> = (0..32)
        .map(|i| ((i * 13) % 17) as f32 / 8.0 - 1.0)
        .collect();
    let target: Vec<f32> = (0..8).map(|i| (i % 3) as f32 - 1.0).collect();
    let gamma_before = vec_of(model.norm.gamma.val());
    for presence in [
        [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        [0.0; 8],
        [1.0; 8],
    ] {
        let p = tensor(&presence, [8], &device);
        let y = model.forward(tensor(&x, [8, 4], &device), p);
        let t = tensor(&target, [8, 1], &device);
        let loss = (y - t).square().mean();
        let loss_value = vec_of(loss.clone())[0];
        assert!(loss_value.is_finite(), "loss {loss_value}");
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
        for (name, v) in [
            ("encoder.weight", vec_of(model.encoder.weight.val())),
            ("norm.gamma", vec_of(model.norm.gamma.val())),
            ("norm.beta", vec_of(model.norm.beta.val())),
            (
                "norm.running_mean",
                vec_of(model.norm.running_mean.value_sync()),
            ),
            (
                "norm.running_var",
                vec_of(model.norm.running_var.value_sync()),
            ),
            ("head.weight", vec_of(model.head.weight.val())),
        ] {
            assert!(v.iter().all(|x| x.is_finite()), "{name} not finite: {v:?}");
        }
    }
    assert_ne!(vec_of(model.norm.gamma.val()), gamma_before);
    assert_ne!(vec_of(model.norm.running_mean.value_sync()), vec![0.0; 6]);
}

/// Whatever (finite) values absent samples hold, present outputs and statistics ignore them.
#[test]
fn absent_sample_values_do_not_leak() {
    let fx = fixture();
    let sh = shape(&fx, "2d");
    let case = sh
        .cases
        .iter()
        .find(|c| c.pattern == "some_absent")
        .unwrap();
    let dims: [usize; 4] = sh.shape.clone().try_into().unwrap();
    let per_sample = sh.x.len() / dims[0];
    let mut x = sh.x.clone();
    for (i, v) in x.iter_mut().enumerate() {
        if case.presence[i / per_sample] == 0.0 {
            *v = 1e3 + i as f32;
        }
    }
    let device = Device::flex().autodiff();
    let bn = layer(sh, &fx, &device);
    let y = bn.forward(
        tensor(&x, dims, &device),
        tensor(&case.presence, [dims[0]], &device),
    );
    assert_masked(
        "y with garbage in absent samples",
        &vec_of(y),
        &case.y,
        &case.presence,
    );
    assert_close(
        "running_mean with garbage in absent samples",
        &vec_of(bn.running_mean.value_sync()),
        &case.running_mean_1,
    );
}
