//! The architecture keys of the config (`model.video.backbone`, `model.audio.encoder`,
//! `model.temporal`, `fusion.strategy`) reach the trainer: a 1-epoch run with a Transformer
//! temporal encoder, attention fusion and the audio ResNet on tiny synthetic data, whose
//! checkpoint rebuilds the same architecture and round-trips with identical outputs; and
//! their validation errors name the key.

use std::path::Path;

mod common;
use avfuse_models::AvInput;
use avfuse_train::checkpoint::Checkpoint;
use avfuse_train::config::Config;
use avfuse_train::train;
use avfuse_train::trainer::{files, load_model};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Device, Tensor, TensorData};

fn tiny_data(root: &Path) {
    common::tiny_data(root, 16, 8);
}

fn config(extra: &[&str]) -> Result<Config, avfuse_train::TrainError> {
    common::tiny_config(&[&["training.epochs=1"], extra].concat())
}

const ARCH: [&str; 7] = [
    "model.temporal.kind=transformer",
    "model.temporal.dim=8",
    "model.temporal.heads=2",
    "model.temporal.ff_dim=16",
    "model.temporal.layers=1",
    "fusion.strategy=attention",
    "model.audio.encoder=resnet",
];

fn probe(d: &Device) -> AvInput {
    let wave =
        |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin() * 0.4).collect() };
    AvInput {
        frames: Tensor::from_data(
            TensorData::new(wave(2 * 4 * 3 * 32 * 32, 0.3), [2, 4, 3, 32, 32]),
            d,
        ),
        mel: Tensor::from_data(TensorData::new(wave(2 * 64 * 16, 0.7), [2, 1, 64, 16]), d),
        presence: Tensor::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0], [2, 2]), d),
    }
}

#[test]
fn transformer_attention_audio_resnet_trains_and_its_checkpoint_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_data(&data);
    let cfg = config(&ARCH).unwrap();
    let m = cfg.model_config();
    assert!(m.temporal.is_some());
    let run = tmp.path().join("run");
    let out = train(&cfg, &common::train_options(&data, &run, false)).unwrap();
    assert_eq!(out.epochs_completed, 1);
    assert_eq!(out.steps, 2);
    let metrics = std::fs::read_to_string(run.join(files::METRICS)).unwrap();
    let line: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(line["train_loss"].as_f64().unwrap().is_finite(), "{line}");

    // The checkpoint carries the config: it rebuilds the same architecture...
    let path = run.join(files::CHECKPOINTS).join(files::LAST);
    let ckpt = Checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.meta.config.model, cfg.model);
    assert_eq!(ckpt.meta.config.fusion, cfg.fusion);
    let d = Device::flex();
    let model = load_model(&ckpt, &path, &d).unwrap();
    let y = model
        .forward(probe(&d))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(y.len(), 2);
    assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
    // ...whose weights do not fit the default one.
    let default = config(&[]).unwrap().model_config().init(&d).unwrap();
    let record =
        ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(ckpt.model.clone())).unwrap();
    assert!(default.try_load_record(record).is_err());

    // Save, load: identical outputs.
    let again_path = tmp.path().join("again.avfc");
    let again = Checkpoint {
        meta: ckpt.meta.clone(),
        model: model.clone().into_record().into_bytes().unwrap().to_vec(),
        optimizer: Vec::new(),
    };
    again.save(&again_path).unwrap();
    let reloaded = load_model(&Checkpoint::load(&again_path).unwrap(), &again_path, &d).unwrap();
    let y2 = reloaded
        .forward(probe(&d))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(y, y2);
}

#[test]
fn architecture_keys_are_validated_with_their_names() {
    let e = config(&["model.temporal.kind=lstm"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.temporal.kind") && e.contains("transformer"),
        "{e}"
    );
    let e = config(&["model.temporal.kind=transformer", "model.temporal.heads=3"])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("model.temporal.dim = 128"), "{e}");
    let e = config(&["fusion.strategy=cross_modal", "model.audio.enabled=false"])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("fusion.strategy = \"cross_modal\""), "{e}");
    let e = config(&["fusion.strategy=cross_modal", "fusion.heads=3"])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("fusion.dim = 8"), "{e}");
    let e = config(&["model.audio.encoder=resnet", "model.audio.blocks=0"])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("model.audio.blocks = 0"), "{e}");
    let e = config(&["model.video.pretrained=w.pth"])
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("model.video.pretrained"), "{e}");
    let e = config(&["model.video.backbone=vgg"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.video.backbone") && e.contains("resnet18"),
        "{e}"
    );
    let e = config(&[
        "model.video.backbone=resnet18",
        "model.video.base_channels=0",
    ])
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("model.video.base_channels = 0"), "{e}");
    // Every choice validates.
    for set in [
        "model.video.backbone=resnet34",
        "model.video.backbone=efficientnet_b0",
        "model.temporal.kind=tconv",
        "model.temporal.kind=avg_pool",
        "fusion.strategy=cross_modal",
    ] {
        config(&[set]).unwrap_or_else(|e| panic!("{set}: {e}"));
    }
}
