//! The AV digits training module on a tiny synthetic 10-class problem (seconds, no real
//! data): learning happens, runs are deterministic, variant (d)'s modality dropout never
//! blanks both modalities, and the export holds what the PyTorch baseline reads.
//!
//! Burn's RNG is process-global, so everything that initialises a model lives in one test.

use avfuse_media::av_digits::{AvDigits, AvDigitsConfig, AvDigitsSplit, Norm, Split};
use avfuse_train::av_digits::{
    DigitCnnConfig, DigitsNetConfig, TestInputs, TrainConfig, Variant, accuracy, init_model,
    plan_epoch, train_variant, write_export,
};
use burn::tensor::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HW: [usize; 2] = [8, 8];
const MEL: [usize; 2] = [6, 8];

/// Class `y` tiles a 3x3 binary texture of its own over the image and another over the mel
/// (the encoders pool globally, so classes differ by local pattern, not by position), with
/// uniform noise everywhere.
fn synthetic(split: Split, n: usize, seed: u64) -> AvDigitsSplit {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut noise = move || (r.random::<f32>() - 0.5) * 1.2;
    let texture = |y: u8, salt: usize, row: usize, col: usize| {
        let bits = (usize::from(y) + 1) * salt % 511 + 1;
        (bits >> ((row % 3) * 3 + col % 3)) & 1 == 1
    };
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let mut images = Vec::with_capacity(n * 64);
    let mut mels = Vec::with_capacity(n * 48);
    for &y in &labels {
        for row in 0..HW[0] {
            for col in 0..HW[1] {
                let on = texture(y, 37, row, col);
                images.push(if on { 1.5 } else { 0.0 } + noise());
            }
        }
        for row in 0..MEL[0] {
            for col in 0..MEL[1] {
                let on = texture(y, 91, row, col);
                mels.push(if on { 1.5 } else { 0.0 } + noise());
            }
        }
    }
    AvDigitsSplit {
        split,
        image_hw: HW,
        mel_shape: MEL,
        images,
        mels,
        labels,
        image_index: (0..n as u32).collect(),
        recording_index: (0..n as u32).collect(),
    }
}

fn tiny_net() -> DigitsNetConfig {
    DigitsNetConfig::new(
        DigitCnnConfig::new()
            .with_channels(vec![8, 16])
            .with_strides(vec![1, 2]),
        DigitCnnConfig::new()
            .with_channels(vec![8, 16])
            .with_strides(vec![1, 2]),
    )
    .with_hidden(32)
}

fn tiny_cfg() -> TrainConfig {
    TrainConfig {
        epochs: 4,
        batch_size: 32,
        lr: 5e-3,
        seed: 3,
        ..TrainConfig::default()
    }
}

#[test]
fn modality_dropout_plan_never_blanks_both_and_is_seeded() {
    let cfg = TrainConfig {
        modality_dropout_p: 0.9,
        ..tiny_cfg()
    };
    let n = 5000;
    let mut hit = 0usize;
    for epoch in 1..=6 {
        let d = plan_epoch(n, epoch, Variant::FusionDropout, &cfg).unwrap();
        let c = plan_epoch(n, epoch, Variant::Fusion, &cfg).unwrap();
        // Same order for every variant; (c) keeps everything.
        assert_eq!(d.order, c.order);
        assert!(c.presence.iter().all(|p| *p == [1, 1]));
        let mut sorted = d.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
        for p in &d.presence {
            assert!(
                p.contains(&1),
                "epoch {epoch}: a sample lost both modalities"
            );
        }
        let lost = d.presence.iter().filter(|p| p.contains(&0)).count();
        assert_eq!(lost, d.dropped[0] + d.dropped[1]);
        // Each modality is dropped about equally often.
        assert!(
            d.dropped[0] > lost / 3 && d.dropped[1] > lost / 3,
            "{:?}",
            d.dropped
        );
        hit += lost;
        assert_eq!(
            d,
            plan_epoch(n, epoch, Variant::FusionDropout, &cfg).unwrap()
        );
        assert_ne!(
            d.order,
            plan_epoch(n, epoch + 1, Variant::Fusion, &cfg)
                .unwrap()
                .order
        );
    }
    // p = 0.9 over 30,000 draws: the rate is within 5 binomial sigmas (~0.009).
    let rate = hit as f64 / (6 * n) as f64;
    assert!((rate - 0.9).abs() < 0.009, "rate {rate}");
}

#[test]
fn learns_a_synthetic_task_deterministically_and_exports() {
    let device = Device::flex();
    let train = synthetic(Split::Train, 400, 1);
    let test = synthetic(Split::Test, 200, 2);
    let (net, cfg) = (tiny_net(), tiny_cfg());

    let mut steps = 0usize;
    let fused = train_variant(
        &train,
        Variant::FusionDropout,
        &net,
        &cfg,
        &device,
        &mut |_| steps += 1,
    )
    .unwrap();
    assert_eq!(steps, cfg.epochs * 400usize.div_ceil(32));
    assert!(fused.dropped[0] > 0 && fused.dropped[1] > 0);
    // Chance is 0.10; with both modalities the task is easy, with one it is still learnable.
    let both = accuracy(
        &fused.model,
        Variant::FusionDropout,
        &test,
        TestInputs::Both,
        64,
        &device,
    )
    .unwrap();
    let image = accuracy(
        &fused.model,
        Variant::FusionDropout,
        &test,
        TestInputs::ImageOnly,
        64,
        &device,
    )
    .unwrap();
    let audio = accuracy(
        &fused.model,
        Variant::FusionDropout,
        &test,
        TestInputs::AudioOnly,
        64,
        &device,
    )
    .unwrap();
    assert!(both > 0.8, "both {both}");
    assert!(image > 0.4 && audio > 0.4, "image {image} audio {audio}");
    assert!(
        fused.epoch_loss.last().unwrap() < &fused.epoch_loss[0],
        "{:?}",
        fused.epoch_loss
    );
    // ln(10) ~ 2.30 at the start.
    assert!(
        (fused.first_loss - 10f64.ln()).abs() < 0.7,
        "{}",
        fused.first_loss
    );

    // Same seed, same run: identical losses and identical predictions.
    let again = train_variant(
        &train,
        Variant::FusionDropout,
        &net,
        &cfg,
        &device,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(again.epoch_loss, fused.epoch_loss);
    let again_both = accuracy(
        &again.model,
        Variant::FusionDropout,
        &test,
        TestInputs::Both,
        64,
        &device,
    )
    .unwrap();
    assert_eq!(again_both, both);

    // An image-only model learns from the image alone.
    let img = train_variant(&train, Variant::ImageOnly, &net, &cfg, &device, &mut |_| {}).unwrap();
    let img_acc = accuracy(
        &img.model,
        Variant::ImageOnly,
        &test,
        TestInputs::ImageOnly,
        64,
        &device,
    )
    .unwrap();
    assert!(img_acc > 0.4, "image-only model {img_acc}");

    // Initial parameters in PyTorch layout: Linear weights are [out, in].
    let (_, params) =
        init_model(Variant::Fusion, &net, cfg.seed, &device.clone().autodiff()).unwrap();
    let hidden = params.iter().find(|p| p.name == "hidden.weight").unwrap();
    assert_eq!(hidden.shape, vec![32, 16 + 16]);
    let conv = params
        .iter()
        .find(|p| p.name == "encoders.1.layers.0.conv.weight")
        .unwrap();
    assert_eq!(conv.shape, vec![8, 1, 3, 3]);
    let (_, params2) =
        init_model(Variant::Fusion, &net, cfg.seed, &device.clone().autodiff()).unwrap();
    assert_eq!(
        params, params2,
        "initial weights are a function of the seed"
    );

    // Export: the arrays, plans and initial weights the baseline reads.
    let data = AvDigits {
        config: AvDigitsConfig::default(),
        val: AvDigitsSplit {
            split: Split::Val,
            ..test.clone()
        },
        test: test.clone(),
        train: train.clone(),
        recordings: Vec::new(),
        image_norm: Norm {
            mean: 0.0,
            std: 1.0,
        },
        mel_norm: Norm {
            mean: 0.0,
            std: 1.0,
        },
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.safetensors");
    let variants = [Variant::Fusion, Variant::FusionDropout];
    write_export(&path, &data, &variants, &net, &cfg, &device).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("train.image").unwrap().shape(), &[400, 1, 8, 8]);
    assert_eq!(st.tensor("test.mel").unwrap().shape(), &[200, 1, 6, 8]);
    assert_eq!(st.tensor("plan.order").unwrap().shape(), &[cfg.epochs, 400]);
    let pres = st.tensor("plan.d.presence").unwrap();
    assert_eq!(pres.shape(), &[cfg.epochs, 400, 2]);
    let plan2 = plan_epoch(400, 2, Variant::FusionDropout, &cfg).unwrap();
    let row = 400 * 2 * 4; // epoch 2 starts after one epoch of [400, 2] f32
    for (i, p) in plan2.presence.iter().enumerate() {
        let at = row + i * 8;
        let img = f32::from_le_bytes(pres.data()[at..at + 4].try_into().unwrap());
        let aud = f32::from_le_bytes(pres.data()[at + 4..at + 8].try_into().unwrap());
        assert_eq!([img, aud], [f32::from(p[0]), f32::from(p[1])]);
    }
    let w = st.tensor("init.d.hidden.weight").unwrap();
    let got: Vec<f32> = w
        .data()
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got, hidden.data);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let config = meta.metadata().as_ref().unwrap().get("config").unwrap();
    let v: serde_json::Value = serde_json::from_str(config).unwrap();
    assert_eq!(v["train"]["epochs"], cfg.epochs);
    assert_eq!(v["variants"], serde_json::json!(["c", "d"]));
}
