//! Temporal encoders, the audio ResNet, fusions and heads (issue 7): masking invariants,
//! attention weights, NaN safety, PyTorch parity of the Transformer, gradient coverage and
//! record round trips.
//!
//! Inputs are built from fixed formulas on the host, never from Burn's global RNG. Burn's RNG
//! is process-global and the tests run in parallel, so every test takes [`lock`] and training
//! mode forwards are seeded right before they run (after a warm-up forward that initialises
//! the lazy parameters, whose initialisation also draws from the RNG).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use avfuse_models::audio_resnet::{AudioResNet, AudioResNetConfig};
use avfuse_models::fusion::{
    Fusion, FusionConfig, FusionOutput, FusionStrategy, MissingEmbedding, ModalityFeatures,
};
use avfuse_models::head::{ActivationKind, Head, HeadConfig};
use avfuse_models::temporal::{
    PositionKind, TemporalEncoder, TemporalEncoderConfig, TemporalKind, TransformerConfig,
};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};

static RNG: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Evaluation (plain device: dropout off, BatchNorm running statistics) and training (autodiff
/// device, training flags on: dropout on, BatchNorm batch statistics).
fn modes() -> [(Device, &'static str); 2] {
    [
        (Device::flex(), "eval"),
        (Device::flex().autodiff(), "train"),
    ]
}

fn wave(n: usize, k: f32, phase: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * k + phase).sin() * 0.8 + 0.1 * (i as f32 * 0.05).cos())
        .collect()
}

/// Large, different values to write over inputs that must not matter.
fn junk(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 40.0 * (i as f32 * 1.7).cos() + 7.0)
        .collect()
}

fn t<const D: usize>(v: Vec<f32>, shape: [usize; D], d: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), d)
}

fn host<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data().try_to_vec::<f32>().unwrap()
}

fn assert_finite(v: &[f32], what: &str) {
    assert!(v.iter().all(|x| x.is_finite()), "{what}: non-finite values");
}

/// `|a - b| <= tol * max(|b|, 1)` elementwise; returns the largest `|a - b|`.
fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let mut worst = 0f32;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: {x} vs {y}"
        );
        worst = worst.max((x - y).abs());
    }
    worst
}

/// Overwrite the masked steps (`mask[b * t + s] == 0`) of a `[B, T, D]` host buffer.
fn junk_masked_steps(v: &mut [f32], mask: &[f32], dim: usize) {
    let j = junk(v.len());
    for (k, &m) in mask.iter().enumerate() {
        if m == 0.0 {
            v[k * dim..(k + 1) * dim].copy_from_slice(&j[k * dim..(k + 1) * dim]);
        }
    }
}

/// Overwrite sample `b` of a batch-major host buffer with `per_sample` values per sample.
fn junk_sample(v: &mut [f32], b: usize, per_sample: usize) {
    let j = junk(v.len());
    v[b * per_sample..(b + 1) * per_sample]
        .copy_from_slice(&j[b * per_sample..(b + 1) * per_sample]);
}

// ---------------------------------------------------------------------------------------
// Temporal encoders
// ---------------------------------------------------------------------------------------

const B: usize = 3;
const T: usize = 6;
const D_IN: usize = 8;

/// Sample 0: all valid; sample 1: last two steps padded; sample 2: steps 0 and 3 missing.
fn time_mask() -> Vec<f32> {
    vec![
        1.0, 1.0, 1.0, 1.0, 1.0, 1.0, //
        1.0, 1.0, 1.0, 1.0, 0.0, 0.0, //
        0.0, 1.0, 1.0, 0.0, 1.0, 1.0,
    ]
}

fn temporal_configs() -> Vec<(TemporalEncoderConfig, &'static str)> {
    let base = TemporalEncoderConfig::new(D_IN)
        .with_dim(12)
        .with_heads(3)
        .with_ff_dim(20)
        .with_layers(2)
        .with_dropout(0.2);
    vec![
        (base.clone().with_kind(TemporalKind::AvgPool), "avg_pool"),
        (base.clone().with_kind(TemporalKind::TConv), "tconv"),
        (
            base.clone()
                .with_kind(TemporalKind::TConv)
                .with_kernel_size(5)
                .with_activation(Some(ActivationKind::Gelu)),
            "tconv_k5_gelu",
        ),
        (
            base.clone().with_kind(TemporalKind::Transformer),
            "transformer_sinusoidal",
        ),
        (
            base.clone()
                .with_kind(TemporalKind::Transformer)
                .with_positions(PositionKind::Learned)
                .with_max_len(10)
                .with_activation(Some(ActivationKind::Relu)),
            "transformer_learned",
        ),
    ]
}

/// `(clip, steps)` on the host; in training mode the RNG is seeded first.
fn run_temporal(
    enc: &TemporalEncoder,
    x: Tensor<3>,
    mask: Option<&Tensor<2>>,
) -> (Vec<f32>, Vec<f32>) {
    if x.device().is_autodiff() {
        x.device().seed(2024);
    }
    let out = enc.forward(x, mask);
    (host(out.clip), host(out.steps))
}

#[test]
fn temporal_masked_steps_never_change_the_output() {
    let _g = lock();
    for (cfg, name) in temporal_configs() {
        for (d, mode) in modes() {
            let enc = cfg.init(&d).unwrap();
            let mask_v = time_mask();
            let mask = t(mask_v.clone(), [B, T], &d);
            let xa = wave(B * T * D_IN, 0.31, 0.2);
            let mut xb = xa.clone();
            junk_masked_steps(&mut xb, &mask_v, D_IN);
            // Warm-up: initialise the lazy parameters before the seeded runs.
            let _ = run_temporal(&enc, t(xa.clone(), [B, T, D_IN], &d), Some(&mask));
            let (ca, sa) = run_temporal(&enc, t(xa, [B, T, D_IN], &d), Some(&mask));
            let (cb, sb) = run_temporal(&enc, t(xb, [B, T, D_IN], &d), Some(&mask));
            assert_eq!(ca, cb, "{name} {mode}: clip changed");
            assert_eq!(sa, sb, "{name} {mode}: steps changed");
            let dout = enc.output_dim();
            assert_eq!(ca.len(), B * dout);
            for (k, &m) in mask_v.iter().enumerate() {
                if m == 0.0 {
                    assert!(
                        sa[k * dout..(k + 1) * dout].iter().all(|&v| v == 0.0),
                        "{name} {mode}: masked step {k} is not zero"
                    );
                }
            }
            assert_finite(&ca, name);
            assert!(ca.iter().any(|&v| v != 0.0), "{name} {mode}: all-zero clip");
        }
    }
}

#[test]
fn trailing_padding_equals_the_shorter_sequence() {
    // Sample 1 of the batch has 4 valid steps then 2 padded ones: its outputs must equal those
    // of the same 4 steps run alone without a mask (padded frames do not contribute at all).
    let _g = lock();
    let d = Device::flex();
    for (cfg, name) in temporal_configs() {
        let enc = cfg.init(&d).unwrap();
        let x = wave(B * T * D_IN, 0.31, 0.2);
        let (clip, steps) = run_temporal(
            &enc,
            t(x.clone(), [B, T, D_IN], &d),
            Some(&t(time_mask(), [B, T], &d)),
        );
        let short: Vec<f32> = x[T * D_IN..T * D_IN + 4 * D_IN].to_vec();
        let (clip1, steps1) = run_temporal(&enc, t(short, [1, 4, D_IN], &d), None);
        let dout = enc.output_dim();
        let _ = assert_close(&clip[dout..2 * dout], &clip1, 1e-5, &format!("{name} clip"));
        let _ = assert_close(
            &steps[T * dout..T * dout + 4 * dout],
            &steps1,
            1e-5,
            &format!("{name} steps"),
        );
    }
}

#[test]
fn fully_masked_sequences_give_zeros_not_nan() {
    let _g = lock();
    for (cfg, name) in temporal_configs() {
        for (d, mode) in modes() {
            let enc = cfg.init(&d).unwrap();
            // Sample 0 fully masked, the others partly; then every sample fully masked.
            let mut m = time_mask();
            m[..T].fill(0.0);
            for mask in [m, vec![0.0; B * T]] {
                let x = t(wave(B * T * D_IN, 0.17, 1.0), [B, T, D_IN], &d);
                let x = if d.is_autodiff() { x.require_grad() } else { x };
                let out = enc.forward(x.clone(), Some(&t(mask.clone(), [B, T], &d)));
                let clip = host(out.clip.clone());
                let steps = host(out.steps.clone());
                assert_finite(&clip, name);
                assert_finite(&steps, name);
                let dout = enc.output_dim();
                assert!(clip[..dout].iter().all(|&v| v == 0.0), "{name} {mode}");
                assert!(steps[..T * dout].iter().all(|&v| v == 0.0), "{name} {mode}");
                if d.is_autodiff() {
                    let loss = (out.clip * 1.5).sum() + out.steps.sum();
                    let grads = loss.backward();
                    let gx = host(x.grad(&grads).unwrap());
                    assert_finite(&gx, &format!("{name} input gradient"));
                    // Masked steps get no gradient.
                    for (k, &mv) in mask.iter().enumerate() {
                        if mv == 0.0 {
                            assert!(gx[k * D_IN..(k + 1) * D_IN].iter().all(|&v| v == 0.0));
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Transformer vs PyTorch
// ---------------------------------------------------------------------------------------

/// Loads tensors by module path (`a.b.c`) into a module's float parameters.
struct LoadByPath {
    path: Vec<String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    unmatched: Vec<String>,
    device: Device,
}

impl ModuleMapper for LoadByPath {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.path.join(".");
        match self.tensors.remove(&key) {
            Some((shape, data)) => {
                let expect: [usize; D] = param.lazy_shape().dims();
                assert_eq!(shape, expect.to_vec(), "{key}: shape");
                let id = param.id;
                let value = Tensor::<D>::from_data(TensorData::new(data, shape), &self.device);
                param.transform_for_load(value, id)
            }
            None => {
                self.unmatched.push(key);
                param
            }
        }
    }
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

#[test]
fn transformer_matches_pytorch() {
    let _g = lock();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/temporal_transformer.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let d = Device::flex();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let n = |k: &str| case[k].as_u64().unwrap() as usize;
        let activation = match case["activation"].as_str().unwrap() {
            "gelu" => ActivationKind::Gelu,
            _ => ActivationKind::Relu,
        };
        let positions = match case["positions"].as_str().unwrap() {
            "learned" => PositionKind::Learned,
            _ => PositionKind::Sinusoidal,
        };
        let enc = TransformerConfig::new(n("input_dim"))
            .with_dim(n("dim"))
            .with_heads(n("heads"))
            .with_ff_dim(n("ff_dim"))
            .with_layers(n("layers"))
            .with_dropout(0.0)
            .with_activation(activation)
            .with_positions(positions)
            .with_max_len(n("max_len").max(1))
            .init(&d)
            .unwrap();
        let tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = case["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), (usizes(&v["shape"]), floats(&v["data"]))))
            .collect();
        let n_tensors = tensors.len();
        let mut loader = LoadByPath {
            path: Vec::new(),
            tensors,
            unmatched: Vec::new(),
            device: d.clone(),
        };
        let enc = enc.map(&mut loader);
        assert!(
            loader.unmatched.is_empty(),
            "{name}: parameters not in the fixture: {:?}",
            loader.unmatched
        );
        assert!(
            loader.tensors.is_empty(),
            "{name}: fixture tensors not loaded: {:?}",
            loader.tensors.keys()
        );
        assert!(n_tensors >= 18, "{name}: only {n_tensors} tensors");
        let shape = usizes(&case["shape"]);
        let [b, tt, din] = [shape[0], shape[1], shape[2]];
        let x = t(floats(&case["x"]), [b, tt, din], &d);
        let mask = t(floats(&case["mask"]), [b, tt], &d);
        let out = enc.forward(x, Some(&mask));
        let ds = assert_close(&host(out.steps), &floats(&case["steps"]), 1e-5, name);
        let dc = assert_close(&host(out.clip), &floats(&case["clip"]), 1e-5, name);
        eprintln!("{name}: max |burn - torch| steps {ds:.2e}, clip {dc:.2e}");
    }
}

// ---------------------------------------------------------------------------------------
// Audio ResNet
// ---------------------------------------------------------------------------------------

fn audio_cfg() -> AudioResNetConfig {
    AudioResNetConfig::new()
        .with_stem_channels(6)
        .with_widths(vec![6, 8, 10])
        .with_blocks(vec![1, 2, 1])
        .with_embed_dim(12)
}

#[test]
fn audio_resnet_absent_samples_never_change_the_output() {
    let _g = lock();
    let (nb, nm, nt) = (4, 16, 16);
    let presence = vec![1.0f32, 0.0, 1.0, 1.0];
    for (d, mode) in modes() {
        let net = audio_cfg().init(&d).unwrap();
        let a = wave(nb * nm * nt, 0.23, 0.4);
        let mut b = a.clone();
        junk_sample(&mut b, 1, nm * nt);
        let p = t(presence.clone(), [nb], &d);
        let run = |v: Vec<f32>| {
            d.seed(5);
            host(net.forward_masked(t(v, [nb, 1, nm, nt], &d), Some(&p)))
        };
        let _ = run(a.clone());
        let ya = run(a);
        let yb = run(b);
        assert_eq!(ya, yb, "{mode}");
        let per = ya.len() / nb;
        assert_eq!(per, 4 * 12, "[B, T / 4, embed_dim]");
        assert!(
            ya[per..2 * per].iter().all(|&v| v == 0.0),
            "{mode}: absent row"
        );
        assert!(ya[..per].iter().any(|&v| v != 0.0), "{mode}: present row");
        assert_finite(&ya, mode);
    }
}

// ---------------------------------------------------------------------------------------
// Fusion
// ---------------------------------------------------------------------------------------

struct FusionCase {
    name: &'static str,
    cfg: FusionConfig,
    /// Steps per modality.
    steps: Vec<usize>,
    /// `[B, M]`, sample-major.
    presence: Vec<f32>,
}

const FB: usize = 4;

fn fusion_cases() -> Vec<FusionCase> {
    let two = vec![1.0f32, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    let three = vec![
        1.0f32, 1.0, 1.0, //
        1.0, 0.0, 1.0, //
        0.0, 1.0, 0.0, //
        1.0, 1.0, 0.0,
    ];
    vec![
        FusionCase {
            name: "concat_zeros",
            cfg: FusionConfig::new(vec![6, 4]),
            steps: vec![5, 3],
            presence: two.clone(),
        },
        FusionCase {
            name: "concat_learned_m3",
            cfg: FusionConfig::new(vec![6, 4, 5]).with_missing(MissingEmbedding::Learned),
            steps: vec![5, 3, 4],
            presence: three.clone(),
        },
        FusionCase {
            name: "attention_m2",
            cfg: FusionConfig::new(vec![6, 4])
                .with_strategy(FusionStrategy::Attention)
                .with_dim(8),
            steps: vec![5, 3],
            presence: two.clone(),
        },
        FusionCase {
            name: "attention_m3",
            cfg: FusionConfig::new(vec![6, 4, 5])
                .with_strategy(FusionStrategy::Attention)
                .with_dim(8),
            steps: vec![5, 3, 4],
            presence: three,
        },
        FusionCase {
            name: "cross_modal",
            cfg: FusionConfig::new(vec![6, 4])
                .with_strategy(FusionStrategy::CrossModal)
                .with_dim(8)
                .with_heads(2)
                .with_layers(2)
                .with_ff_dim(12)
                .with_dropout(0.2),
            steps: vec![5, 3],
            presence: two,
        },
    ]
}

/// Time mask of modality `m` with `steps` steps: sample 1 loses its last step, sample 3 its
/// first (when longer than one step).
fn fusion_time_mask(steps: usize) -> Vec<f32> {
    let mut v = vec![1.0f32; FB * steps];
    if steps > 1 {
        v[steps + steps - 1] = 0.0;
        v[3 * steps] = 0.0;
    }
    v
}

/// Host token buffers `[B, T_m, D_m]`, one per modality.
fn fusion_tokens(case: &FusionCase) -> Vec<Vec<f32>> {
    case.cfg
        .input_dims
        .iter()
        .zip(&case.steps)
        .enumerate()
        .map(|(m, (&dm, &tm))| wave(FB * tm * dm, 0.19 + 0.07 * m as f32, m as f32))
        .collect()
}

/// The same tokens with every absent modality's sample and every masked step overwritten.
fn fusion_tokens_junked(case: &FusionCase) -> Vec<Vec<f32>> {
    let m_count = case.cfg.input_dims.len();
    let mut tokens = fusion_tokens(case);
    for (m, v) in tokens.iter_mut().enumerate() {
        let (dm, tm) = (case.cfg.input_dims[m], case.steps[m]);
        junk_masked_steps(v, &fusion_time_mask(tm), dm);
        for b in 0..FB {
            if case.presence[b * m_count + m] == 0.0 {
                junk_sample(v, b, tm * dm);
            }
        }
    }
    tokens
}

fn features(case: &FusionCase, tokens: &[Vec<f32>], d: &Device) -> Vec<ModalityFeatures> {
    tokens
        .iter()
        .enumerate()
        .map(|(m, v)| {
            let (dm, tm) = (case.cfg.input_dims[m], case.steps[m]);
            ModalityFeatures::from_tokens(
                t(v.clone(), [FB, tm, dm], d),
                Some(t(fusion_time_mask(tm), [FB, tm], d)),
            )
        })
        .collect()
}

/// Every output tensor on the host: fused, modality weights, cross weights.
fn fusion_host(out: FusionOutput) -> Vec<Vec<f32>> {
    let mut v = vec![host(out.fused)];
    if let Some(w) = out.modality_weights {
        v.push(host(w));
    }
    if let Some(c) = out.cross_weights {
        v.push(host(c.first_to_second));
        v.push(host(c.second_to_first));
    }
    v
}

fn run_fusion(f: &Fusion, case: &FusionCase, tokens: &[Vec<f32>], d: &Device) -> Vec<Vec<f32>> {
    let m = case.cfg.input_dims.len();
    let p = t(case.presence.clone(), [FB, m], d);
    if d.is_autodiff() {
        d.seed(77);
    }
    fusion_host(f.forward(&features(case, tokens, d), &p))
}

#[test]
fn fusion_absent_modalities_and_masked_steps_never_change_the_output() {
    let _g = lock();
    for case in fusion_cases() {
        for (d, mode) in modes() {
            let f = case.cfg.init(&d).unwrap();
            let a = fusion_tokens(&case);
            let b = fusion_tokens_junked(&case);
            let _ = run_fusion(&f, &case, &a, &d);
            let ya = run_fusion(&f, &case, &a, &d);
            let yb = run_fusion(&f, &case, &b, &d);
            assert_eq!(ya, yb, "{} {mode}", case.name);
            assert_eq!(ya[0].len(), FB * f.output_dim());
            assert_eq!(f.output_dim(), case.cfg.output_dim());
            assert_finite(&ya[0], case.name);
            assert!(ya[0].iter().any(|&v| v != 0.0), "{}", case.name);
        }
    }
}

#[test]
fn concat_fills_absent_slots_with_zeros_or_the_missing_embedding() {
    let _g = lock();
    let d = Device::flex();
    let case = &fusion_cases()[0];
    let f = case.cfg.init(&d).unwrap();
    let y = run_fusion(&f, case, &fusion_tokens(case), &d).remove(0);
    // Sample 1 lacks modality 1 (columns 6..10), sample 2 modality 0 (columns 0..6).
    assert!(y[10 + 6..10 + 10].iter().all(|&v| v == 0.0));
    assert!(y[20..20 + 6].iter().all(|&v| v == 0.0));
    assert!(y[20 + 6..20 + 10].iter().any(|&v| v != 0.0));
}

#[test]
fn attention_weights_are_zero_for_absent_and_sum_to_one_over_present() {
    let _g = lock();
    for (d, mode) in modes() {
        let cfg = FusionConfig::new(vec![6, 4, 5])
            .with_strategy(FusionStrategy::Attention)
            .with_dim(8);
        let f = cfg.init(&d).unwrap();
        // One pattern per sample, including a single present modality and none at all.
        let presence = vec![
            1.0f32, 1.0, 1.0, //
            0.0, 1.0, 1.0, //
            0.0, 0.0, 1.0, //
            1.0, 0.0, 0.0, //
            0.0, 0.0, 0.0,
        ];
        let nb = 5;
        let feats: Vec<ModalityFeatures> = [6usize, 4, 5]
            .iter()
            .enumerate()
            .map(|(m, &dm)| {
                ModalityFeatures::from_clip(t(wave(nb * dm, 0.9, m as f32), [nb, dm], &d))
            })
            .collect();
        let out = f.forward(&feats, &t(presence.clone(), [nb, 3], &d));
        let w = host(out.modality_weights.unwrap());
        let fused = host(out.fused);
        assert_finite(&w, mode);
        assert_finite(&fused, mode);
        for b in 0..nb {
            let row = &w[b * 3..b * 3 + 3];
            let p = &presence[b * 3..b * 3 + 3];
            for (wv, pv) in row.iter().zip(p) {
                if *pv == 0.0 {
                    assert_eq!(*wv, 0.0, "{mode} sample {b}");
                } else {
                    assert!(*wv > 0.0, "{mode} sample {b}");
                }
            }
            let sum: f32 = row.iter().sum();
            if p.contains(&1.0) {
                assert!((sum - 1.0).abs() <= 1e-6, "{mode} sample {b}: sum {sum}");
            } else {
                assert_eq!(sum, 0.0);
                assert!(fused[b * 8..b * 8 + 8].iter().all(|&v| v == 0.0));
            }
        }
        // One present modality: weight exactly 1.
        assert_eq!(w[2 * 3 + 2], 1.0);
        assert_eq!(w[3 * 3], 1.0);
    }
}

#[test]
fn cross_modal_weights_cover_valid_keys_only() {
    let _g = lock();
    let d = Device::flex();
    let case = fusion_cases().pop().unwrap();
    let f = case.cfg.init(&d).unwrap();
    let p = t(case.presence.clone(), [FB, 2], &d);
    let out = f.forward(&features(&case, &fusion_tokens(&case), &d), &p);
    let c = out.cross_weights.unwrap();
    for (w, tq, tk, q, k) in [
        (host(c.first_to_second), 5, 3, 0, 1),
        (host(c.second_to_first), 3, 5, 1, 0),
    ] {
        let heads = 2;
        let (mq, mk) = (fusion_time_mask(tq), fusion_time_mask(tk));
        for b in 0..FB {
            for h in 0..heads {
                for i in 0..tq {
                    let row = &w[((b * heads + h) * tq + i) * tk..][..tk];
                    let live = case.presence[b * 2 + q] == 1.0
                        && case.presence[b * 2 + k] == 1.0
                        && mq[b * tq + i] == 1.0;
                    let sum: f32 = row.iter().sum();
                    if live {
                        assert!((sum - 1.0).abs() < 1e-5, "b{b} h{h} i{i}: {sum}");
                        for (j, &v) in row.iter().enumerate() {
                            if mk[b * tk + j] == 0.0 {
                                assert_eq!(v, 0.0);
                            }
                        }
                    } else {
                        assert!(row.iter().all(|&v| v == 0.0), "b{b} h{h} i{i}");
                    }
                }
            }
        }
    }
}

#[test]
fn fusions_do_not_give_nan_with_one_or_no_modality_present() {
    let _g = lock();
    for mut case in fusion_cases() {
        let m = case.cfg.input_dims.len();
        // Sample 0: only modality 0; sample 1: only the last; samples 2, 3: none.
        let mut p = vec![0.0f32; FB * m];
        p[0] = 1.0;
        p[m + m - 1] = 1.0;
        case.presence = p;
        for (d, mode) in modes() {
            let f = case.cfg.init(&d).unwrap();
            let tokens = fusion_tokens(&case);
            let feats: Vec<ModalityFeatures> = features(&case, &tokens, &d)
                .into_iter()
                .map(|f| match (d.is_autodiff(), f.tokens) {
                    (true, Some(x)) => ModalityFeatures::from_tokens(x.require_grad(), f.time_mask),
                    (_, tokens) => ModalityFeatures { tokens, ..f },
                })
                .collect();
            let pr = t(case.presence.clone(), [FB, m], &d);
            let out = f.forward(&feats, &pr);
            let fused = host(out.fused.clone());
            assert_finite(&fused, &format!("{} {mode}", case.name));
            if d.is_autodiff() {
                let grads = out.fused.sum().backward();
                for x in feats.iter().filter_map(|f| f.tokens.as_ref()) {
                    if let Some(g) = x.grad(&grads) {
                        assert_finite(&host(g), case.name);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Gradients
// ---------------------------------------------------------------------------------------

/// Counts the parameters without a gradient or with a non-finite one. BatchNorm running
/// statistics (visited as float tensors too) are buffers, not parameters: skipped by path.
struct GradCheck<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    seen: usize,
    missing: usize,
    non_finite: usize,
}

impl ModuleVisitor for GradCheck<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self
            .path
            .last()
            .is_some_and(|n| n == "running_mean" || n == "running_var")
        {
            return;
        }
        self.seen += 1;
        match self.grads.get::<D>(param.id) {
            Some(g) => {
                if !host(g).iter().all(|v| v.is_finite()) {
                    self.non_finite += 1;
                }
            }
            None => self.missing += 1,
        }
    }
}

fn check_grads<M: Module>(module: &M, loss: Tensor<1>, what: &str) {
    check_grads_of(module, loss.backward(), what);
}

fn check_grads_of<M: Module>(module: &M, grads: burn::tensor::Gradients, what: &str) {
    let grads = GradientsParams::from_grads(grads, module);
    let mut c = GradCheck {
        grads: &grads,
        path: Vec::new(),
        seen: 0,
        missing: 0,
        non_finite: 0,
    };
    module.visit(&mut c);
    assert!(c.seen > 0, "{what}: no parameters visited");
    assert_eq!(
        c.missing, 0,
        "{what}: {} of {} parameters without gradient",
        c.missing, c.seen
    );
    assert_eq!(c.non_finite, 0, "{what}: non-finite gradients");
}

#[test]
fn every_parameter_of_present_branches_gets_a_gradient() {
    let _g = lock();
    let d = Device::flex().autodiff();
    d.seed(9);
    for (cfg, name) in temporal_configs() {
        if cfg.kind == TemporalKind::AvgPool {
            continue; // no parameters
        }
        let enc = cfg.init(&d).unwrap();
        let out = enc.forward(
            t(wave(B * T * D_IN, 0.3, 0.0), [B, T, D_IN], &d),
            Some(&t(time_mask(), [B, T], &d)),
        );
        let w = t(
            wave(B * T * enc.output_dim(), 0.7, 0.3),
            [B, T, enc.output_dim()],
            &d,
        );
        check_grads(&enc, (out.steps * w).sum() + out.clip.sum(), name);
    }

    let net = audio_cfg().init(&d).unwrap();
    let y = net.forward_masked(
        t(wave(3 * 16 * 16, 0.23, 0.4), [3, 1, 16, 16], &d),
        Some(&t(vec![1.0, 0.0, 1.0], [3], &d)),
    );
    let w = t(wave(3 * 4 * 12, 0.5, 0.0), [3, 4, 12], &d);
    check_grads(&net, (y * w).sum(), "audio_resnet");

    for case in fusion_cases() {
        if case.cfg.strategy == FusionStrategy::Concat
            && case.cfg.missing == MissingEmbedding::Zeros
        {
            continue; // no parameters
        }
        let f = case.cfg.init(&d).unwrap();
        let m = case.cfg.input_dims.len();
        let tokens = fusion_tokens(&case);
        let feats: Vec<ModalityFeatures> = features(&case, &tokens, &d)
            .into_iter()
            .map(|mut f| {
                let x = f.tokens.take().map(|x| x.require_grad());
                ModalityFeatures::from_tokens(x.unwrap(), f.time_mask)
            })
            .collect();
        let out = f.forward(&feats, &t(case.presence.clone(), [FB, m], &d));
        let w = t(
            wave(FB * f.output_dim(), 0.41, 0.2),
            [FB, f.output_dim()],
            &d,
        );
        let loss = (out.fused * w).sum();
        // Absent modalities' inputs get exactly zero gradient.
        let grads = loss.backward();
        for (mi, feat) in feats.iter().enumerate() {
            let (dm, tm) = (case.cfg.input_dims[mi], case.steps[mi]);
            let g = host(feat.tokens.as_ref().unwrap().grad(&grads).unwrap());
            for b in 0..FB {
                if case.presence[b * m + mi] == 0.0 {
                    assert!(
                        g[b * tm * dm..(b + 1) * tm * dm].iter().all(|&v| v == 0.0),
                        "{}: gradient reached absent modality {mi} of sample {b}",
                        case.name
                    );
                }
            }
        }
        check_grads_of(&f, grads, case.name);
    }

    for (hidden, classes) in [(vec![16, 8], 1), (vec![], 3)] {
        let head: Head = HeadConfig::new(10)
            .with_hidden(hidden)
            .with_num_classes(classes)
            .init(&d)
            .unwrap();
        let y = head.forward(t(wave(4 * 10, 0.6, 0.1), [4, 10], &d));
        check_grads(&head, y.sum(), "head");
    }
}

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

/// Save `module`'s record, load it into `fresh` (a newly initialised module of the same
/// configuration) and return the loaded module.
fn round_trip<M: Module>(module: &M, fresh: M) -> M {
    let bytes = module.clone().into_record().into_bytes().unwrap();
    fresh.load_record(ModuleRecord::from_bytes(bytes).unwrap())
}

#[test]
fn records_round_trip_to_identical_outputs() {
    let _g = lock();
    let d = Device::flex();
    let mask = t(time_mask(), [B, T], &d);
    let x = || t(wave(B * T * D_IN, 0.3, 0.0), [B, T, D_IN], &d);
    for (cfg, name) in temporal_configs() {
        let enc = cfg.init(&d).unwrap();
        let y1 = run_temporal(&enc, x(), Some(&mask));
        let loaded = round_trip(&enc, cfg.init(&d).unwrap());
        let y2 = run_temporal(&loaded, x(), Some(&mask));
        assert_eq!(y1, y2, "{name}");
        if cfg.kind != TemporalKind::AvgPool {
            let other = run_temporal(&cfg.init(&d).unwrap(), x(), Some(&mask));
            assert_ne!(y1, other, "{name}: a fresh init should differ");
        }
    }

    for case in fusion_cases() {
        let mut f = case.cfg.init(&d).unwrap();
        if case.cfg.missing == MissingEmbedding::Learned {
            // Give the zero-initialised missing embeddings values worth saving.
            f = f.map(&mut Offset(0.25));
        }
        let tokens = fusion_tokens(&case);
        let y1 = run_fusion(&f, &case, &tokens, &d);
        let loaded = round_trip(&f, case.cfg.init(&d).unwrap());
        assert_eq!(y1, run_fusion(&loaded, &case, &tokens, &d), "{}", case.name);
    }

    // Audio ResNet: after a training step, so the running statistics differ from the
    // defaults and must travel with the record.
    let ad = Device::flex().autodiff();
    let net: AudioResNet = audio_cfg().init(&ad).unwrap();
    let mel = |dev: &Device| t(wave(3 * 16 * 16, 0.23, 0.4), [3, 1, 16, 16], dev);
    let _ = net.forward_masked(mel(&ad), Some(&t(vec![1.0, 0.0, 1.0], [3], &ad)));
    let eval = net.valid();
    let y1 = host(eval.forward(mel(&d)));
    let fresh = audio_cfg().init(&d).unwrap();
    let untrained = host(fresh.clone().forward(mel(&d)));
    let loaded = round_trip(&eval, fresh);
    assert_eq!(y1, host(loaded.forward(mel(&d))));
    assert_ne!(y1, untrained);

    let head = HeadConfig::new(10).with_num_classes(4).init(&d).unwrap();
    let xh = || t(wave(4 * 10, 0.6, 0.1), [4, 10], &d);
    let y1 = host(head.forward(xh()));
    let loaded = round_trip(
        &head,
        HeadConfig::new(10).with_num_classes(4).init(&d).unwrap(),
    );
    assert_eq!(y1, host(loaded.forward(xh())));
}

/// Adds a constant to every float parameter.
struct Offset(f64);

impl ModuleMapper for Offset {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let c = self.0;
        param.map(|x| x + c)
    }
}

/// Every float parameter's path and gradient (None: no gradient entry).
struct NamedGrads<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    out: Vec<(String, Option<Vec<f32>>)>,
}

impl ModuleVisitor for NamedGrads<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out
            .push((self.path.join("."), self.grads.get::<D>(param.id).map(host)));
    }
}

#[test]
fn cross_modal_absent_modality_reaches_nothing() {
    // Modality 1 absent from every sample: its stream, its projection and the attention of
    // modality 0 onto it must have no effect at all (exactly zero gradient), while modality
    // 0's own path (projection, feed-forward, final norm) learns.
    let _g = lock();
    let d = Device::flex().autodiff();
    let mut case = fusion_cases().pop().unwrap();
    assert_eq!(case.cfg.strategy, FusionStrategy::CrossModal);
    case.cfg = case.cfg.with_dropout(0.0);
    case.presence = vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    let f = case.cfg.init(&d).unwrap();
    let feats = features(&case, &fusion_tokens(&case), &d);
    let out = f.forward(&feats, &t(case.presence.clone(), [FB, 2], &d));
    let w = t(wave(FB * 16, 0.41, 0.2), [FB, 16], &d);
    let grads = GradientsParams::from_grads((out.fused * w).sum().backward(), &f);
    let mut v = NamedGrads {
        grads: &grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    f.visit(&mut v);
    let zero = |g: &Option<Vec<f32>>| g.as_ref().is_none_or(|g| g.iter().all(|&x| x == 0.0));
    let (mut n_dead, mut n_live) = (0, 0);
    for (path, g) in &v.out {
        let dead = path.contains("streams.0.attn")
            || path.contains("streams.0.norm_kv")
            || path.contains("streams.1.")
            || path.contains("proj.1.")
            || path.contains("norm.1.");
        if dead {
            n_dead += 1;
            assert!(zero(g), "{path}: gradient from an absent modality");
        } else if path.contains("proj.0.weight") || path.contains("ff.linear_outer.weight") {
            n_live += 1;
            assert!(!zero(g), "{path}: no gradient");
        }
    }
    assert!(
        n_dead >= 20 && n_live >= 3,
        "paths: {n_dead} dead, {n_live} live"
    );
}
