//! Gradient coverage of inactive encoders and the optimiser rule for them (design 2.4), on a
//! batch where no sample has audio: the audio encoder is inactive.

use avfuse_models::encoders::{FrameCnnConfig, MelCnnConfig};
use avfuse_models::{AvInput, AvModel, AvModelConfig, Blanking, Modality};
use avfuse_train::config::{Coverage, FusionConfig};
use avfuse_train::coverage::{inactive_modalities, remove_encoder_grads, training_loss};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

const B: usize = 3;
/// `[video, audio]` per sample: no audio anywhere.
const PRESENCE: [f32; 6] = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0];

/// One model record, loaded into fresh models (clones share BatchNorm running state, and the
/// global RNG is shared with other tests: the record is drawn once under a lock).
fn models() -> impl Fn() -> AvModel {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let d = Device::flex().autodiff();
    let cfg = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new()).with_head_dropout(0.0);
    let bytes = cfg.init(&d).unwrap().into_record().into_bytes().unwrap();
    move || {
        let record = burn::store::ModuleRecord::from_bytes(bytes.clone()).unwrap();
        cfg.init(&d).unwrap().try_load_record(record).unwrap()
    }
}

/// Inputs from a fixed formula; `audio_k` changes the (absent) audio input.
fn input(audio_k: f32) -> (AvInput, Tensor<2>) {
    let d = Device::flex().autodiff();
    let wave =
        |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin() * 0.5).collect() };
    let input = AvInput {
        frames: Tensor::from_data(
            TensorData::new(wave(B * 4 * 3 * 32 * 32, 0.37), [B, 4, 3, 32, 32]),
            &d,
        ),
        mel: Tensor::from_data(
            TensorData::new(wave(B * 16 * 16, audio_k), [B, 1, 16, 16]),
            &d,
        ),
        presence: Tensor::from_data(TensorData::new(PRESENCE.to_vec(), [B, 2]), &d),
    };
    let labels = Tensor::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0], [B, 1]), &d);
    (input, labels)
}

fn fusion(blanking: Blanking, coverage: Coverage, scale: f64) -> FusionConfig {
    FusionConfig {
        blanking,
        coverage,
        coverage_scale: scale,
        ..FusionConfig::default()
    }
}

/// Gradient of every trainable parameter of `m`'s `modality` encoder, in structural order
/// (`None` where a parameter has no entry).
struct Grads<'a>(&'a GradientsParams, Vec<Option<Vec<f32>>>);

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            self.1.push(
                self.0
                    .get::<D>(param.id)
                    .map(|g| g.into_data().try_to_vec::<f32>().unwrap()),
            );
        }
    }
}

fn encoder_grads(
    m: &AvModel,
    modality: Modality,
    grads: &GradientsParams,
) -> Vec<Option<Vec<f32>>> {
    let mut v = Grads(grads, Vec::new());
    m.visit_encoder(modality, &mut v);
    v.1
}

/// Every parameter (trainable or not) of an encoder, in structural order.
struct Values(Vec<Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            self.0
                .push(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
}

fn encoder_values(m: &AvModel, modality: Modality) -> Vec<Vec<f32>> {
    let mut v = Values(Vec::new());
    m.visit_encoder(modality, &mut v);
    v.0
}

/// Loss (reported BCE), and gradients of the whole model.
fn step(m: &AvModel, f: &FusionConfig) -> (f32, GradientsParams) {
    let inactive = inactive_modalities(&PRESENCE);
    assert_eq!(inactive, vec![Modality::Audio]);
    let (x, y) = input(0.11);
    let (loss, bce) = training_loss(m, x, y, f, 1.0, &inactive, None);
    let bce = bce.into_scalar::<f32>();
    (bce, GradientsParams::from_grads(loss.backward(), m))
}

#[test]
fn compact_skips_the_inactive_encoder_and_dummy_coverage_brings_it_back() {
    let model = models();
    let (bce_none, g_none) = step(&model(), &fusion(Blanking::Compact, Coverage::None, 1e-7));
    let m = model();
    let audio = encoder_grads(&m, Modality::Audio, &g_none);
    assert!(!audio.is_empty());
    assert!(
        audio.iter().all(Option::is_none),
        "compact ran the absent audio encoder"
    );
    assert!(
        encoder_grads(&m, Modality::Video, &g_none)
            .iter()
            .all(Option::is_some)
    );

    for scale in [1e-7, 0.0] {
        let m = model();
        let (bce, g) = step(&m, &fusion(Blanking::Compact, Coverage::Dummy, scale));
        // The reported loss is the BCE alone, bit-identical to the run without coverage.
        assert_eq!(bce.to_bits(), bce_none.to_bits());
        for (k, grad) in encoder_grads(&m, Modality::Audio, &g)
            .into_iter()
            .enumerate()
        {
            let grad = grad
                .unwrap_or_else(|| panic!("scale {scale}: audio parameter {k} has no gradient"));
            // d(scale * sum(p)) / dp = scale, element by element.
            assert!(
                grad.iter().all(|&v| v == scale as f32),
                "scale {scale}: param {k}: {grad:?}"
            );
        }
        // The active encoder's gradients are untouched by the dummy term.
        let (v_none, v_dummy) = (
            encoder_grads(&m, Modality::Video, &g_none),
            encoder_grads(&m, Modality::Video, &g),
        );
        assert_eq!(
            v_none, v_dummy,
            "scale {scale}: the video gradients changed"
        );
    }
}

#[test]
fn zero_after_encoder_runs_every_encoder_and_the_absent_input_never_matters() {
    let model = models();
    for blanking in [Blanking::Mask, Blanking::ZeroInput] {
        let f = fusion(blanking, Coverage::ZeroAfterEncoder, 1e-7);
        let m = model();
        let (_, g) = step(&m, &f);
        for modality in Modality::ALL {
            let grads = encoder_grads(&m, modality, &g);
            assert!(
                grads.iter().all(Option::is_some),
                "{blanking:?}: {modality:?} lacks gradients"
            );
        }
        // The audio features are zeroed after the encoder: its (real, dropped) input changes
        // nothing.
        let logits = |k: f32| {
            let (x, _) = input(k);
            model()
                .forward_with(x, blanking)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(logits(0.11), logits(0.53), "{blanking:?}");
    }
}

#[test]
fn inactive_parameters_stay_bit_identical_by_default_and_move_as_adamw_says_otherwise() {
    let model = models();
    let f = fusion(Blanking::Compact, Coverage::Dummy, 1e-7);
    let (lr, wd, eps) = (1e-3f64, 0.01f32, 1e-8f32);
    let optim = || {
        AdamWConfig::new()
            .with_weight_decay(wd)
            .with_epsilon(eps)
            .init()
    };

    // Default rule (`skip`): the entries are removed before the step.
    let m = model();
    let before = encoder_values(&m, Modality::Audio);
    let video_before = encoder_values(&m, Modality::Video);
    let (_, mut g) = step(&m, &f);
    remove_encoder_grads(&m, &[Modality::Audio], &mut g);
    let m = optim().step(lr, m, g);
    assert_eq!(
        encoder_values(&m, Modality::Audio),
        before,
        "skip: an inactive parameter moved"
    );
    assert_ne!(
        encoder_values(&m, Modality::Video),
        video_before,
        "the active encoder did not learn"
    );

    // PyTorch's rule: AdamW's first step on the constant gradient g = 1e-7:
    // p' = p (1 - lr wd) - lr * g / (sqrt(g^2) + eps)  (m_hat = g, v_hat = g^2).
    let m = model();
    let (_, g) = step(&m, &f);
    let m = optim().step(lr, m, g);
    let after = encoder_values(&m, Modality::Audio);
    let gr = 1e-7f32;
    let delta = lr as f32 * gr / (gr + eps);
    for (p0, p1) in before.iter().zip(&after) {
        for (&a, &b) in p0.iter().zip(p1) {
            let want = a * (1.0 - lr as f32 * wd) - delta;
            assert!(
                (b - want).abs() <= 1e-6,
                "pytorch rule: {a} -> {b}, want {want}"
            );
        }
    }
    // The dummy term's tiny gradient moves each inactive weight by ~0.9 lr: the reason the
    // default rule removes it.
    assert!(delta > 0.9e-3);
}
