//! Optimisers, global gradient clipping and the class-weighted loss against values computed
//! by PyTorch itself (`scripts/fixtures/make_optim_fixtures.py` ->
//! `tests/fixtures/optim.json`).

use avfuse_train::config::{OptimizerKind, TrainingConfig};
use avfuse_train::coverage::{bce_with_logits, classification_loss};
use avfuse_train::optim::{build_optimizer, clip_grad_norm, global_grad_norm};
use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;

fn fixture() -> Value {
    let text = include_str!("fixtures/optim.json");
    serde_json::from_str(text).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

/// Three parameters of the fixture's shapes (flattened to rank 1, which does not change
/// norms or elementwise updates).
#[derive(Module, Debug)]
struct Params {
    a: Param<Tensor<1>>,
    b: Param<Tensor<1>>,
    c: Param<Tensor<1>>,
}

fn param(v: Vec<f32>, d: &Device) -> Param<Tensor<1>> {
    let n = v.len();
    Param::from_tensor(Tensor::from_data(TensorData::new(v, [n]), d))
}

#[test]
fn clip_grad_norm_matches_pytorch() {
    let f = fixture();
    let d = Device::flex().autodiff();
    let grads: Vec<Vec<f32>> = f["clip"]["grads"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    for case in f["clip"]["cases"].as_array().unwrap() {
        let m = Params {
            a: param(vec![0.0; grads[0].len()], &d),
            b: param(vec![0.0; grads[1].len()], &d),
            c: param(vec![0.0; grads[2].len()], &d),
        };
        let mut gp = GradientsParams::new();
        for (p, g) in [&m.a, &m.b, &m.c].into_iter().zip(&grads) {
            let t = Tensor::<1>::from_data(
                TensorData::new(g.clone(), [g.len()]),
                &d.clone().without_autodiff(),
            );
            gp.register::<1>(p.id, t);
        }
        let max_norm = case["max_norm"].as_f64().unwrap();
        let before = global_grad_norm(&m, &gp).unwrap().into_scalar::<f32>();
        let norm = clip_grad_norm(&m, &mut gp, max_norm)
            .unwrap()
            .into_scalar::<f32>();
        let want = case["norm"].as_f64().unwrap() as f32;
        assert!((norm - want).abs() <= 1e-5 * want, "norm {norm} vs {want}");
        assert_eq!(norm, before);
        for (k, p) in [&m.a, &m.b, &m.c].into_iter().enumerate() {
            let got = gp
                .get::<1>(p.id)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            close(
                &got,
                &floats(&case["clipped"][k]),
                1e-5,
                &format!("max_norm {max_norm}: grad {k}"),
            );
        }
    }
}

#[test]
fn class_weighted_loss_is_pytorch_cross_entropy_with_weights() {
    let f = fixture();
    let cw = &f["class_weighted"];
    let d = Device::flex();
    let x = floats(&cw["logits"]);
    let y: Vec<f32> = cw["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let n = x.len();
    let logits = || Tensor::<2>::from_data(TensorData::new(x.clone(), [n, 1]), &d);
    let labels = || Tensor::<2>::from_data(TensorData::new(y.clone(), [n, 1]), &d);
    let plain = bce_with_logits(logits(), labels(), None).into_scalar::<f32>();
    let want = cw["unweighted"].as_f64().unwrap() as f32;
    assert!(
        (plain - want).abs() <= 1e-5 * (1.0 + want),
        "unweighted {plain} vs {want}"
    );
    for case in cw["cases"].as_array().unwrap() {
        let w = floats(&case["weights"]);
        let got = bce_with_logits(logits(), labels(), Some([f64::from(w[0]), f64::from(w[1])]))
            .into_scalar::<f32>();
        let want = case["loss"].as_f64().unwrap() as f32;
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want),
            "weights {w:?}: {got} vs {want}"
        );
    }
}

#[test]
fn multiclass_loss_is_pytorch_cross_entropy() {
    let f = fixture();
    let mc = &f["multiclass"];
    let d = Device::flex();
    let x = floats(&mc["logits"]);
    let k = mc["classes"].as_u64().unwrap() as usize;
    let y: Vec<f32> = mc["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let n = y.len();
    let logits = Tensor::<2>::from_data(TensorData::new(x, [n, k]), &d);
    let targets = Tensor::<2>::from_data(TensorData::new(y, [n, 1]), &d);
    for case in mc["cases"].as_array().unwrap() {
        let w: Option<Vec<f64>> = case["weights"]
            .as_array()
            .map(|w| w.iter().map(|v| v.as_f64().unwrap()).collect());
        // Through the dispatcher the trainer uses: K > 1 logits select cross-entropy.
        let got =
            classification_loss(logits.clone(), targets.clone(), w.as_deref()).into_scalar::<f32>();
        let want = case["loss"].as_f64().unwrap() as f32;
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want),
            "weights {w:?}: {got} vs {want}"
        );
    }
}

#[derive(Module, Debug)]
struct One {
    w: Param<Tensor<1>>,
}

fn trajectory(t: &TrainingConfig, p0: &[f32], grads: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let d = Device::flex().autodiff();
    let mut m = One {
        w: param(p0.to_vec(), &d),
    };
    let mut optim = build_optimizer(t);
    let mut out = Vec::new();
    for g in grads {
        let mut gp = GradientsParams::new();
        let gt = Tensor::<1>::from_data(
            TensorData::new(g.clone(), [g.len()]),
            &d.clone().without_autodiff(),
        );
        gp.register::<1>(m.w.id, gt);
        m = optim.step(t.lr, m, gp);
        out.push(m.w.val().into_data().try_to_vec::<f32>().unwrap());
    }
    out
}

#[test]
fn sgd_and_adamw_follow_pytorch_trajectories() {
    let f = fixture();
    let o = &f["optim"];
    let p0 = floats(&o["p0"]);
    let grads: Vec<Vec<f32>> = o["grads"].as_array().unwrap().iter().map(floats).collect();
    for case in o["sgd"].as_array().unwrap() {
        let c = &case["config"];
        let t = TrainingConfig {
            optimizer: OptimizerKind::Sgd,
            lr: c["lr"].as_f64().unwrap(),
            momentum: c["momentum"].as_f64().unwrap(),
            nesterov: c["nesterov"].as_bool().unwrap(),
            weight_decay: c["weight_decay"].as_f64().unwrap(),
            ..TrainingConfig::default()
        };
        let got = trajectory(&t, &p0, &grads);
        for (s, want) in case["trajectory"].as_array().unwrap().iter().enumerate() {
            close(&got[s], &floats(want), 2e-6, &format!("sgd {c}: step {s}"));
        }
    }
    for case in o["adamw"].as_array().unwrap() {
        let c = &case["config"];
        let t = TrainingConfig {
            optimizer: OptimizerKind::Adamw,
            lr: c["lr"].as_f64().unwrap(),
            beta1: c["betas"][0].as_f64().unwrap(),
            beta2: c["betas"][1].as_f64().unwrap(),
            eps: c["eps"].as_f64().unwrap(),
            weight_decay: c["weight_decay"].as_f64().unwrap(),
            ..TrainingConfig::default()
        };
        let got = trajectory(&t, &p0, &grads);
        for (s, want) in case["trajectory"].as_array().unwrap().iter().enumerate() {
            close(
                &got[s],
                &floats(want),
                2e-5,
                &format!("adamw {c}: step {s}"),
            );
        }
    }
}
