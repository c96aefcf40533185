//! End-to-end training on a tiny synthetic dataset: checkpoints, metrics, exact resume,
//! and refusal to overwrite or to resume with a different config.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

mod common;
use avfuse_train::checkpoint::Checkpoint;
use avfuse_train::config::Config;
use avfuse_train::trainer::{files, load_model};
use avfuse_train::{TrainOptions, train};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

/// Every float tensor of a module (parameters and BatchNorm running statistics), in
/// structural order. Checkpoint bytes cannot be compared directly: records carry the
/// randomly drawn parameter ids.
struct Collect(Vec<Vec<f32>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0
            .push(param.val().into_data().try_to_vec::<f32>().unwrap());
    }
}

fn weights(run: &Path) -> Vec<Vec<f32>> {
    let path = run.join(files::CHECKPOINTS).join(files::LAST);
    let ckpt = Checkpoint::load(&path).unwrap();
    let model = load_model(&ckpt, &path, &Device::flex()).unwrap();
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

/// Burn's random generator is process-global (`Device::seed`), so two trainings on parallel
/// test threads would interleave their dropout draws. One `avfuse` process runs one trainer;
/// here the tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_data(root: &Path) {
    common::tiny_data(root, 24, 12);
}

fn tiny_config(epochs: usize) -> Config {
    let epochs = format!("training.epochs={epochs}");
    common::tiny_config(&["fusion.modality_dropout_prob=0.3", &epochs]).unwrap()
}

fn opts(data: &Path, out: &Path, resume: bool) -> TrainOptions {
    common::train_options(data, out, resume)
}

/// metrics.jsonl lines without their wall-clock fields.
fn metrics_without_timing(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join(files::METRICS))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("epoch_seconds");
            o.remove("clips_per_second");
            v
        })
        .collect()
}

#[test]
fn resumed_run_continues_exactly() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_data(&data);

    // Uninterrupted: 3 epochs.
    let full = tmp.path().join("full");
    let out = train(&tiny_config(3), &opts(&data, &full, false)).unwrap();
    assert_eq!(out.epochs_completed, 3);
    assert_eq!(out.steps, 9);
    // Interrupted after 1 epoch, then resumed to 3.
    let split = tmp.path().join("split");
    let first = train(
        &tiny_config(3),
        &TrainOptions {
            stop_after_epochs: Some(1),
            ..opts(&data, &split, false)
        },
    )
    .unwrap();
    assert_eq!(first.epochs_completed, 1);
    let resumed = train(&tiny_config(3), &opts(&data, &split, true)).unwrap();
    assert_eq!(resumed.epochs_completed, 3);

    let a = Checkpoint::load(&full.join(files::CHECKPOINTS).join(files::LAST)).unwrap();
    let b = Checkpoint::load(&split.join(files::CHECKPOINTS).join(files::LAST)).unwrap();
    assert_eq!(a.meta.step, b.meta.step);
    // Equal weights two epochs after the resume also prove the AdamW moments and step
    // count were restored: with fresh moments the updates would differ.
    let (wa, wb) = (weights(&full), weights(&split));
    assert!(wa.len() >= 20, "{} tensors", wa.len());
    assert!(
        wa == wb,
        "resumed weights differ from the uninterrupted run"
    );
    assert!(!b.optimizer.is_empty());
    // TensorBoard: the resumed run wrote its own event file, which starts with a session
    // start just after the checkpoint's last step (TensorBoard hides later events of the
    // interrupted run's file), and logs every later step.
    let mut tb: Vec<_> = std::fs::read_dir(split.join(files::TENSORBOARD))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tb.sort();
    assert_eq!(tb.len(), 2, "{tb:?}");
    let later: Vec<_> = tb
        .iter()
        .map(|p| avfuse_report::read_events(p).unwrap())
        .find(|ev| ev.iter().any(|e| e.session_start))
        .expect("one file marks the restart");
    let restart = later.iter().find(|e| e.session_start).unwrap();
    assert_eq!(restart.step, first.steps as i64 + 1);
    let loss_steps: Vec<i64> = later
        .iter()
        .filter(|e| e.scalars.iter().any(|s| s.tag == "train/loss"))
        .map(|e| e.step)
        .collect();
    assert!(
        !loss_steps.is_empty() && loss_steps.iter().all(|&s| s > first.steps as i64),
        "{loss_steps:?}"
    );
    assert_eq!(
        metrics_without_timing(&full),
        metrics_without_timing(&split)
    );
    assert_eq!(metrics_without_timing(&full).len(), 3);
    assert!(full.join(files::CHECKPOINTS).join(files::BEST).is_file());
    assert!(full.join(files::CONFIG).is_file());
}

#[test]
fn refuses_to_overwrite_and_to_resume_a_different_config() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_data(&data);
    let run = tmp.path().join("run");
    train(&tiny_config(1), &opts(&data, &run, false)).unwrap();
    let before = std::fs::read(run.join(files::CHECKPOINTS).join(files::LAST)).unwrap();

    let e = train(&tiny_config(1), &opts(&data, &run, false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("already holds a run") && e.contains("--resume"),
        "{e}"
    );

    let mut other = tiny_config(2);
    other.training.lr = 1e-4;
    let e = train(&other, &opts(&data, &run, true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("differs") && e.contains("training"), "{e}");

    let e = train(
        &tiny_config(1),
        &opts(&data, &tmp.path().join("fresh"), true),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("last.avfc") && e.contains("does not exist"),
        "{e}"
    );
    // None of the refused calls touched the run.
    assert_eq!(
        std::fs::read(run.join(files::CHECKPOINTS).join(files::LAST)).unwrap(),
        before
    );
}

#[test]
fn missing_data_writes_nothing() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let e = train(
        &tiny_config(1),
        &opts(&tmp.path().join("nope"), &out, false),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope") && e.contains("no such directory"), "{e}");
    assert!(
        !out.exists(),
        "a failed start must not create the run directory"
    );
}

/// Trainable tensors (not BatchNorm running statistics) of a module on an autodiff device.
struct Trainable(Vec<Vec<f32>>);

impl ModuleVisitor for Trainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            self.0
                .push(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
}

/// Trainable tensors of the video encoder. (Its BatchNorm running statistics do move: the
/// encoder still runs on the zeroed frames until masked BatchNorm is wired into the model.)
/// The weights only video feeds: its encoder and (attention, cross_modal) its fusion
/// projection.
fn video_weights(model: &avfuse_models::AvModel) -> Vec<Vec<f32>> {
    let mut c = Trainable(Vec::new());
    model.visit_modality_params(avfuse_models::Modality::Video, &mut c);
    c.0
}

fn video_encoder_weights(model: &avfuse_models::AvModel) -> Vec<Vec<f32>> {
    let mut c = Trainable(Vec::new());
    model.visit_encoder(avfuse_models::Modality::Video, &mut c);
    c.0
}

/// Design 2.4: a modality absent from a whole batch keeps its encoder (and its fusion
/// projection under `attention`) untouched under the default rule (no weight decay, no
/// moment update), and moves as AdamW says under `pytorch`. Batch-mode modality dropout with all weight on video blanks video in every
/// batch, so the video encoder is inactive at every step: after one epoch and after two,
/// its weights must be bit-identical under `skip`, and shrink (weight decay on a zero
/// gradient) under `pytorch`.
#[test]
fn inactive_encoder_is_untouched_by_default_and_decays_under_the_pytorch_rule() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    tiny_data(&data);
    let run = |rule: &str, epochs: usize, strategy: &str| {
        let base = dir.path().join(format!("base-{epochs}.yaml"));
        std::fs::write(&base, tiny_config(epochs).to_yaml()).unwrap();
        let sets = [
            "fusion.modality_dropout_prob=1.0".to_string(),
            "fusion.modality_dropout.mode=batch".into(),
            "fusion.modality_dropout.probs=[1.0, 0.0]".into(),
            format!("fusion.inactive_update={rule}"),
            format!("fusion.strategy={strategy}"),
        ];
        let cfg = Config::load(Some(&base), &sets).unwrap();
        let out = dir.path().join(format!("{rule}-{epochs}-{strategy}"));
        train(&cfg, &opts(&data, &out, false)).unwrap();
        let path = out.join(files::CHECKPOINTS).join(files::LAST);
        let ckpt = Checkpoint::load(&path).unwrap();
        let model = load_model(&ckpt, &path, &Device::flex().autodiff()).unwrap();
        (
            video_weights(&model),
            video_encoder_weights(&model).len(),
            weights(&out),
        )
    };
    for strategy in ["concat", "attention"] {
        let (skip1, encoder_tensors, all1) = run("skip", 1, strategy);
        let (skip2, _, all2) = run("skip", 2, strategy);
        assert!(!skip1.is_empty());
        if strategy == "attention" {
            // The video projection (weight and bias) is covered too.
            assert_eq!(skip1.len(), encoder_tensors + 2, "{strategy}");
        }
        assert_eq!(
            skip1, skip2,
            "{strategy}, skip: the inactive video encoder or projection changed"
        );
        assert_ne!(all1, all2, "{strategy}: the rest of the model trains");
    }
    let (py1, _, _) = run("pytorch", 1, "attention");
    let (py2, _, _) = run("pytorch", 2, "attention");
    assert_ne!(
        py1, py2,
        "pytorch rule: weight decay must move the video encoder"
    );
    // AdamW on a zero gradient only decays: no weight grows.
    for (a, b) in py2.iter().flatten().zip(py1.iter().flatten()) {
        assert!(a.abs() <= b.abs(), "{a} vs {b}");
    }
}

/// SGD with Nesterov momentum, gradient accumulation over 2 batches, global clipping, class
/// weights and periodic checkpoints: the step count follows the accumulation, the periodic
/// checkpoints appear where asked, and an interrupted run still resumes exactly (the SGD
/// momentum buffers travel in the checkpoint).
#[test]
fn sgd_accumulation_clipping_class_weights_and_periodic_checkpoints_resume_exactly() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_data(&data);
    let cfg = {
        let mut c = tiny_config(3);
        c.training.optimizer = avfuse_train::config::OptimizerKind::Sgd;
        c.training.lr = 0.05;
        c.training.momentum = 0.9;
        c.training.nesterov = true;
        c.training.grad_accum_steps = 2;
        c.training.grad_clip_norm = Some(0.5);
        c.training.class_weights = Some(vec![1.0, 2.0]);
        c.training.checkpoint_every = 2;
        c.validate().unwrap();
        c
    };
    let full = tmp.path().join("full");
    let out = train(&cfg, &opts(&data, &full, false)).unwrap();
    // 24 clips / batch 8 = 3 batches per epoch -> groups {0, 1}, {2}: 2 steps per epoch.
    assert_eq!(out.steps, 6);
    let ckpts = full.join(files::CHECKPOINTS);
    assert!(ckpts.join(files::periodic(2)).is_file());
    assert!(!ckpts.join(files::periodic(1)).exists());
    assert!(!ckpts.join(files::periodic(3)).exists());
    let periodic = Checkpoint::load(&ckpts.join(files::periodic(2))).unwrap();
    assert_eq!(periodic.meta.epoch, 2);
    assert_eq!(periodic.meta.step, 4);

    let split = tmp.path().join("split");
    train(
        &cfg,
        &TrainOptions {
            stop_after_epochs: Some(1),
            ..opts(&data, &split, false)
        },
    )
    .unwrap();
    train(&cfg, &opts(&data, &split, true)).unwrap();
    assert!(
        weights(&full) == weights(&split),
        "resumed SGD run differs from the uninterrupted one"
    );
    assert_eq!(
        metrics_without_timing(&full),
        metrics_without_timing(&split)
    );
    // Clipping and class weights change the trajectory (they are not silently ignored).
    let plain = tmp.path().join("plain");
    let mut c2 = cfg.clone();
    c2.training.grad_clip_norm = None;
    c2.training.class_weights = None;
    train(&c2, &opts(&data, &plain, false)).unwrap();
    assert!(weights(&plain) != weights(&full));
}

/// `plateau` keeps state (best metric, bad epochs, current rate) that must travel in the
/// checkpoint for an exact resume; `cosine_restarts` restarts its cycle every
/// `restart_epochs` (here 1 epoch, no warm-up: every epoch ends at the same rate).
#[test]
fn plateau_resumes_exactly_and_cosine_restarts_cycle() {
    let _turn = serial();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_data(&data);
    let mut cfg = tiny_config(3);
    cfg.training.scheduler = avfuse_train::config::SchedulerKind::Plateau;
    cfg.training.plateau.patience = 0;
    cfg.training.plateau.threshold = 0.5; // nothing counts as better: reduce every epoch
    cfg.training.warmup_epochs = 0.0;
    cfg.validate().unwrap();
    let full = tmp.path().join("full");
    train(&cfg, &opts(&data, &full, false)).unwrap();
    let split = tmp.path().join("split");
    train(
        &cfg,
        &TrainOptions {
            stop_after_epochs: Some(1),
            ..opts(&data, &split, false)
        },
    )
    .unwrap();
    train(&cfg, &opts(&data, &split, true)).unwrap();
    assert!(
        weights(&full) == weights(&split),
        "resumed plateau run differs"
    );
    let m = metrics_without_timing(&full);
    assert_eq!(m, metrics_without_timing(&split));
    let lrs: Vec<f64> = m.iter().map(|r| r["lr"].as_f64().unwrap()).collect();
    // Epoch 1 sets the best (PyTorch starts from -inf), epoch 2 is a bad epoch (not 50 %
    // better) beyond patience 0, so epoch 3 runs at lr * 0.1.
    let lr = cfg.training.lr;
    assert_eq!(lrs[..2], [lr, lr], "{lrs:?}");
    assert!((lrs[2] - lr * 0.1).abs() < 1e-12, "{lrs:?}");
    let ckpt = Checkpoint::load(&full.join(files::CHECKPOINTS).join(files::LAST)).unwrap();
    assert!(ckpt.meta.plateau.is_some());

    let mut cfg = tiny_config(3);
    cfg.training.scheduler = avfuse_train::config::SchedulerKind::CosineRestarts;
    cfg.training.restart_epochs = 1;
    cfg.training.warmup_epochs = 0.0;
    let run = tmp.path().join("restarts");
    train(&cfg, &opts(&data, &run, false)).unwrap();
    let lrs: Vec<f64> = metrics_without_timing(&run)
        .iter()
        .map(|r| r["lr"].as_f64().unwrap())
        .collect();
    // 3 steps per epoch: the last step of each epoch sits at T_cur = 2/3 of the cycle.
    let want = cfg.training.min_lr
        + (cfg.training.lr - cfg.training.min_lr)
            * (1.0 + (std::f64::consts::PI * 2.0 / 3.0).cos())
            / 2.0;
    for l in &lrs {
        assert!((l - want).abs() < 1e-12, "{lrs:?} vs {want}");
    }
}
