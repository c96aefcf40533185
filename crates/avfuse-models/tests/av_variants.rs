//! `AvModel` with every combination of temporal encoder x fusion x audio encoder (small
//! dims), and the ImageNet video backbones: forward shapes, absent-modality invariance in
//! evaluation and training, `mask` == `compact`, a training step; the default model keeps
//! the original module tree; pretrained backbone weights load through the model config.
//!
//! Inputs come from fixed formulas on the host; Burn's RNG is process-global, so every test
//! takes [`lock`] and seeds it before building a model.

use std::sync::{Mutex, MutexGuard};

use avfuse_models::audio_resnet::AudioResNetConfig;
use avfuse_models::av::{AudioEncoderKind, VideoBackbone};
use avfuse_models::fusion::FusionStrategy;
use avfuse_models::temporal::{TemporalEncoderConfig, TemporalKind};
use avfuse_models::{AvInput, AvModel, AvModelConfig, Blanking, FrameCnnConfig, MelCnnConfig};
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};

static RNG: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

const B: usize = 3;
const T: usize = 4;
const HW: usize = 16;
const MELS: usize = 16;

fn wave(n: usize, k: f32, phase: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * k + phase).sin() * 0.4 + 0.05 * (i as f32 * 0.03).cos())
        .collect()
}

fn host<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data().try_to_vec::<f32>().unwrap()
}

/// Presence `[video, audio]` per sample: both, audio absent, video absent.
const PRESENCE: [f32; 6] = [1.0, 1.0, 1.0, 0.0, 0.0, 1.0];

/// A batch; `junk` writes large values over the absent inputs (sample 1's audio, sample 2's
/// video), which must not change anything.
fn input(d: &Device, junk: bool) -> AvInput {
    let n_frames = T * 3 * HW * HW;
    let mut frames = wave(B * n_frames, 0.37, 0.0);
    let n_mel = MELS * T * 4;
    let mut mel = wave(B * n_mel, 0.11, 1.0);
    if junk {
        for (i, v) in frames[2 * n_frames..].iter_mut().enumerate() {
            *v = 30.0 * (i as f32 * 1.3).cos() + 5.0;
        }
        for (i, v) in mel[n_mel..2 * n_mel].iter_mut().enumerate() {
            *v = -20.0 * (i as f32 * 0.7).sin() + 3.0;
        }
    }
    AvInput {
        frames: Tensor::from_data(TensorData::new(frames, [B, T, 3, HW, HW]), d),
        mel: Tensor::from_data(TensorData::new(mel, [B, 1, MELS, T * 4]), d),
        presence: Tensor::from_data(TensorData::new(PRESENCE.to_vec(), [B, 2]), d),
    }
}

fn temporal(kind: Option<TemporalKind>) -> Option<TemporalEncoderConfig> {
    kind.map(|k| {
        TemporalEncoderConfig::new(0)
            .with_kind(k)
            .with_dim(8)
            .with_layers(1)
            .with_heads(2)
            .with_ff_dim(16)
            .with_dropout(0.0)
    })
}

fn config(
    kind: Option<TemporalKind>,
    fusion: FusionStrategy,
    audio: AudioEncoderKind,
) -> AvModelConfig {
    AvModelConfig::new(
        FrameCnnConfig::new()
            .with_channels(vec![4, 8])
            .with_embed_dim(6),
        MelCnnConfig::new()
            .with_channels(vec![4, 8])
            .with_embed_dim(6),
    )
    .with_audio_encoder(audio)
    .with_audio_resnet(
        AudioResNetConfig::new()
            .with_stem_channels(4)
            .with_widths(vec![4, 8])
            .with_blocks(vec![1, 1])
            .with_embed_dim(5),
    )
    .with_temporal(temporal(kind))
    .with_fusion_strategy(fusion)
    .with_fusion_dim(8)
    .with_fusion_heads(2)
    .with_fusion_ff_dim(16)
    .with_fusion_dropout(0.0)
    .with_head_hidden(vec![8, 4])
    .with_head_dropout(0.0)
}

fn combos() -> Vec<(AvModelConfig, String)> {
    let mut out = Vec::new();
    for kind in [
        None,
        Some(TemporalKind::AvgPool),
        Some(TemporalKind::TConv),
        Some(TemporalKind::Transformer),
    ] {
        for fusion in [
            FusionStrategy::Concat,
            FusionStrategy::Attention,
            FusionStrategy::CrossModal,
        ] {
            for audio in [AudioEncoderKind::Cnn, AudioEncoderKind::Resnet] {
                out.push((
                    config(kind, fusion, audio),
                    format!("temporal {kind:?} / fusion {fusion:?} / audio {audio:?}"),
                ));
            }
        }
    }
    out
}

/// One record, loaded into fresh models: identical weights without sharing BatchNorm running
/// state between clones.
fn factory(cfg: &AvModelConfig, d: &Device) -> impl Fn() -> AvModel {
    d.seed(11);
    let m = cfg.init(d).unwrap();
    // Initialise every lazy parameter with a forward.
    let _ = m.forward(input(&Device::flex(), false).to(d));
    let bytes = m.into_record().into_bytes().unwrap();
    let (cfg, d) = (cfg.clone(), d.clone());
    move || {
        let record = ModuleRecord::from_bytes(bytes.clone()).unwrap();
        cfg.init(&d).unwrap().try_load_record(record).unwrap()
    }
}

trait To {
    fn to(self, d: &Device) -> Self;
}

impl To for AvInput {
    fn to(self, d: &Device) -> Self {
        AvInput {
            frames: Tensor::from_data(self.frames.into_data(), d),
            mel: Tensor::from_data(self.mel.into_data(), d),
            presence: Tensor::from_data(self.presence.into_data(), d),
        }
    }
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 + 1e-4 * y.abs(),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

struct Grads<'a>(&'a GradientsParams, Vec<Option<Vec<f32>>>);

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.1.push(self.0.get::<D>(param.id).map(host));
    }
}

struct Collect(Vec<Vec<f32>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(host(param.val()));
    }
}

/// Logits, gradients of `sum(y^2)` and every tensor after the forward (running stats too).
type Outcome = (Vec<f32>, Vec<Option<Vec<f32>>>, Vec<Vec<f32>>);

/// Run one forward/backward with `blanking`; see [`Outcome`].
fn run(m: AvModel, x: AvInput, blanking: Blanking) -> Outcome {
    let y = m.forward_with(x, blanking);
    let logits = host(y.clone());
    let grads = GradientsParams::from_grads((y.clone() * y).sum().backward(), &m);
    let mut g = Grads(&grads, Vec::new());
    m.visit(&mut g);
    let mut c = Collect(Vec::new());
    m.valid().visit(&mut c);
    (logits, g.1, c.0)
}

fn check_variant(cfg: &AvModelConfig, name: &str) {
    let eval = Device::flex();
    let train = Device::flex().autodiff();

    // Shapes and the declared widths.
    let m = factory(cfg, &eval)();
    assert_eq!(m.embed_dim(), cfg.embed_dim(), "{name}");
    let z = m.embed(input(&eval, false));
    assert_eq!(z.dims(), [B, cfg.embed_dim()], "{name}: embed");
    let fused = m.fuse_scaled(input(&eval, false), Blanking::Mask, 1.0);
    if cfg.fusion_strategy == FusionStrategy::Attention {
        let w = host(fused.modality_weights.expect("attention weights"));
        // Absent modalities get weight exactly 0; present ones sum to 1.
        assert_eq!((w[3], w[4]), (0.0, 0.0), "{name}: absent weights {w:?}");
        assert!((w[0] + w[1] - 1.0).abs() < 1e-5, "{name}: {w:?}");
    }
    assert_eq!(m.forward(input(&eval, false)).dims(), [B, 1], "{name}");

    // Absent inputs never change the output, in evaluation (every blanking) and in training
    // (`mask`, `compact`).
    for (d, mode) in [(&eval, "eval"), (&train, "train")] {
        let make = factory(cfg, d);
        for blanking in [Blanking::Mask, Blanking::Compact, Blanking::ZeroInput] {
            // `zero_input` in training lets the (zeroed, by the loader) absent inputs into the
            // BatchNorm batch statistics by design: the invariance is not its contract there.
            if blanking == Blanking::ZeroInput && mode == "train" {
                continue;
            }
            let a = host(make().forward_with(input(d, false), blanking));
            let b = host(make().forward_with(input(d, true), blanking));
            assert_eq!(a, b, "{name} ({mode}, {blanking:?}): absent input leaked");
            assert!(a.iter().all(|v| v.is_finite()), "{name}: {a:?}");
        }
    }

    // mask == compact in training: logits, gradients, running statistics.
    let make = factory(cfg, &train);
    let (lm, gm, sm) = run(make(), input(&train, false), Blanking::Mask);
    let (lc, gc, sc) = run(make(), input(&train, false), Blanking::Compact);
    close(&lc, &lm, &format!("{name}: logits"));
    assert_eq!(gm.len(), gc.len());
    for (i, (a, b)) in gc.iter().zip(&gm).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => close(a, b, &format!("{name}: grad {i}")),
            (None, None) => {}
            // A parameter only the absent samples would reach: zero under `mask`.
            (None, Some(b)) => assert!(b.iter().all(|v| *v == 0.0), "{name}: grad {i}"),
            (Some(_), None) => panic!("{name}: grad {i} only under compact"),
        }
    }
    for (i, (a, b)) in sc.iter().zip(&sm).enumerate() {
        close(a, b, &format!("{name}: tensor {i} after the step"));
    }

    // A training step: finite loss, every parameter of both branches moves.
    let m = make();
    let before = {
        let mut c = Collect(Vec::new());
        m.visit(&mut c);
        c.0
    };
    let y = m.forward(input(&train, false));
    let loss = (y.clone() * y).mean();
    assert!(host(loss.clone())[0].is_finite(), "{name}: loss");
    let grads = GradientsParams::from_grads(loss.backward(), &m);
    let mut optim = burn::optim::AdamWConfig::new().init();
    let m = optim.step(1e-2, m, grads);
    let mut after = Collect(Vec::new());
    m.visit(&mut after);
    let changed = before.iter().zip(&after.0).filter(|(a, b)| a != b).count();
    assert!(
        changed * 2 > before.len(),
        "{name}: only {changed} of {} tensors changed",
        before.len()
    );
}

#[test]
fn every_temporal_fusion_and_audio_encoder_combination() {
    let _g = lock();
    for (cfg, name) in combos() {
        cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        check_variant(&cfg, &name);
    }
}

#[test]
fn imagenet_video_backbones() {
    let _g = lock();
    for (backbone, temporal_kind, fusion) in [
        (
            VideoBackbone::Resnet18,
            Some(TemporalKind::Transformer),
            FusionStrategy::Attention,
        ),
        (VideoBackbone::Resnet50, None, FusionStrategy::Concat),
        (
            VideoBackbone::EfficientnetB0,
            Some(TemporalKind::TConv),
            FusionStrategy::CrossModal,
        ),
    ] {
        let cfg = config(temporal_kind, fusion, AudioEncoderKind::Cnn)
            .with_video_backbone(backbone)
            .with_video_base_channels(4);
        let name = format!("{backbone:?} / {temporal_kind:?} / {fusion:?}");
        check_variant(&cfg, &name);
    }
}

/// With every default the model is the original one: the same tensors under the same names.
#[test]
fn default_model_keeps_the_original_module_tree() {
    let _g = lock();
    struct Paths(Vec<String>, Vec<String>);
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.0.push(self.1.join("."));
        }
    }
    let d = Device::flex();
    let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
        .init(&d)
        .unwrap();
    let mut p = Paths(Vec::new(), Vec::new());
    m.visit(&mut p);
    let tops: Vec<&str> =
        p.0.iter()
            .map(|s| s.split('.').next().unwrap_or(""))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
    assert_eq!(
        tops,
        ["audio", "fuse", "head_hidden", "head_out", "video"],
        "{:?}",
        p.0
    );
    assert!(p.0.contains(&"head_hidden.weight".to_string()), "{:?}", p.0);
    assert!(p.0.contains(&"fuse.weight".to_string()), "{:?}", p.0);
}

#[test]
fn invalid_combinations_name_the_key() {
    let e = config(None, FusionStrategy::CrossModal, AudioEncoderKind::Cnn)
        .with_enable_audio(false)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("fusion.strategy = \"cross_modal\""), "{e}");
    let e = config(None, FusionStrategy::Concat, AudioEncoderKind::Cnn)
        .with_video_pretrained(Some("w.safetensors".into()))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("model.video.pretrained"), "{e}");
    let e = config(
        Some(TemporalKind::Transformer),
        FusionStrategy::Concat,
        AudioEncoderKind::Cnn,
    )
    .with_temporal(temporal(Some(TemporalKind::Transformer)).map(|t| t.with_heads(3)))
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("model.temporal.dim = 8"), "{e}");
    let e = config(None, FusionStrategy::Concat, AudioEncoderKind::Resnet)
        .with_audio_resnet(AudioResNetConfig::new().with_blocks(vec![1]))
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("model.audio.blocks"), "{e}");
}

/// `video_pretrained` loads a torchvision-layout state dict into the ResNet backbone
/// (fixture: a width-4 ResNet-18 `.pth` written by scripts/fixtures/make_backbone_fixtures.py);
/// `init` alone does not read it.
#[test]
fn pretrained_backbone_loads_through_the_config() {
    let _g = lock();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny_resnet18_w4.pth"
    );
    let cfg = config(None, FusionStrategy::Concat, AudioEncoderKind::Cnn)
        .with_video_backbone(VideoBackbone::Resnet18)
        .with_video_base_channels(4)
        .with_video_pretrained(Some(path.to_string()));
    let d = Device::flex();
    let loaded = cfg.init_pretrained(&d).unwrap();
    let fresh = cfg.init(&d).unwrap();
    let x = input(&d, false);
    let (a, b) = (host(loaded.embed(x.clone())), host(fresh.embed(x)));
    assert_ne!(a, b, "the pretrained weights changed nothing");
    // Loading twice gives the same backbone (the weights come from the file).
    let again = cfg.init_pretrained(&d).unwrap();
    let dv = cfg.video_dim();
    let (a2, _) = (host(again.embed(input(&d, false))), ());
    for row in 0..B {
        assert_eq!(
            &a[row * cfg.embed_dim()..row * cfg.embed_dim() + dv],
            &a2[row * cfg.embed_dim()..row * cfg.embed_dim() + dv],
            "row {row}: video clip features differ between two loads"
        );
    }
    let e = cfg
        .clone()
        .with_video_base_channels(8)
        .init_pretrained(&d)
        .unwrap_err()
        .to_string();
    assert!(e.contains("shape mismatch"), "{e}");
}
