//! Multi-class training (`dataset.classes`): the classes are the synthetic clip kinds, the
//! head gets one logit per class, the checkpoint names the classes, validation and `eval`
//! report multi-class accuracy, macro F1 and a confusion matrix beside the real-vs-fake
//! metrics; and the data and config errors name what is wrong.

use std::path::Path;

use avfuse_media::cache::read_manifest;
mod common;
use avfuse_train::checkpoint::Checkpoint;
use avfuse_train::config::Config;
use avfuse_train::data::{Dataset, ModalitySet};
use avfuse_train::eval::{EvalOptions, evaluate, robustness_table};
use avfuse_train::train;
use avfuse_train::trainer::{files, load_model};
use burn::tensor::Device;

const KINDS: [&str; 4] = ["real", "desync", "visual_manipulation", "audio_swap"];

fn tiny_data(root: &Path) {
    common::tiny_data(root, 24, 12);
}

fn config(extra: &[&str]) -> Result<Config, avfuse_train::TrainError> {
    let multiclass = [
        "dataset.classes=[real, desync, visual_manipulation, audio_swap]",
        "training.epochs=2",
        "training.early_stopping.metric=f1",
    ];
    common::tiny_config(&[&multiclass[..], extra].concat())
}

#[test]
fn kinds_as_classes_train_and_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tiny_data(&data);
    let cfg = config(&["training.class_weights=[1.0, 2.0, 2.0, 2.0]"]).unwrap();
    assert_eq!(cfg.num_outputs(), 4);
    let run = tmp.path().join("run");
    let out = train(&cfg, &common::train_options(&data, &run, false)).unwrap();
    assert_eq!(out.epochs_completed, 2);
    assert_eq!(out.metric, "f1");
    let metrics = std::fs::read_to_string(run.join(files::METRICS)).unwrap();
    for line in metrics.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let loss = r["train_loss"].as_f64().unwrap();
        // Cross-entropy over 4 classes starts near ln 4, far above a binary loss's ln 2.
        assert!(loss.is_finite() && loss > 0.0, "{r}");
        let acc = r["val_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{r}");
    }

    // The checkpoint names the classes; the model has one output per class.
    let path = run.join(files::CHECKPOINTS).join(files::LAST);
    let ckpt = Checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.meta.labels, KINDS);
    let model = load_model(&ckpt, &path, &Device::flex()).unwrap();
    let ds = Dataset::load_with_classes(
        &data.join("val"),
        ckpt.meta.config.dataset.classes.as_deref(),
    )
    .unwrap();
    let manifest = read_manifest(&data.join("val")).unwrap();
    for (clip, &t) in manifest.iter().zip(&ds.targets) {
        assert_eq!(KINDS[usize::from(t)], clip.kind);
    }
    let all: Vec<usize> = (0..ds.len()).collect();
    let pres = ds.presence_for(ModalitySet::Both);
    let logits = model.forward(ds.batch(&all, &pres, &ckpt.meta.normalizer, &Device::flex()));
    assert_eq!(logits.dims(), [ds.len(), 4]);

    // eval: real-vs-fake metrics plus the 4-class report.
    let mut opts = EvalOptions::new(
        path.clone(),
        data.join("val"),
        tmp.path().join("eval"),
        Device::flex(),
    );
    opts.corruptions.clear();
    opts.plots = false;
    let report = evaluate(&ckpt, &opts).unwrap();
    assert_eq!(report.classes, KINDS);
    let both = &report.results["both"];
    assert!(both.metrics.auc.is_some());
    let mc = both.multiclass.as_ref().expect("multi-class report");
    assert_eq!(mc.num_classes, 4);
    assert_eq!(mc.n, ds.len());
    for (k, row) in mc.confusion.iter().enumerate() {
        let support = ds.targets.iter().filter(|&&t| usize::from(t) == k).count();
        assert_eq!(row.iter().sum::<u64>(), support as u64, "class {k}");
    }
    let table = robustness_table(&report);
    assert!(
        table.contains("macro-F1") && table.contains("audio_swap"),
        "{table}"
    );
    // Per-clip classes: one row per clip and modality set, probabilities summing to 1.
    let csv = std::fs::read_to_string(tmp.path().join("eval/predictions_classes.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,modality_set,corruption,class,pred_class,p_real,p_desync,p_visual_manipulation,p_audio_swap"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 3 * ds.len());
    for r in &rows {
        assert!(KINDS.contains(&r[3]) && KINDS.contains(&r[4]), "{r:?}");
        let sum: f64 = r[5..].iter().map(|p| p.parse::<f64>().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{r:?}");
    }
    assert!(report.files.iter().any(|f| f == "predictions_classes.csv"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("eval/eval.json")).unwrap()).unwrap();
    assert_eq!(
        json["results"]["both"]["multiclass"]["confusion"][0]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

#[test]
fn class_errors_name_the_key_or_the_clip() {
    let e = config(&["dataset.classes=[real, fake]"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("dataset.classes") && e.contains("three"),
        "{e}"
    );
    let e = config(&["dataset.classes=[real, a, a]"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice"), "{e}");
    let e = config(&["training.class_weights=[1.0, 2.0]"])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("training.class_weights") && e.contains("4 weights"),
        "{e}"
    );
    // The binary default still takes two weights.
    let binary: Vec<String> = vec!["training.class_weights=[1.0, 2.0]".into()];
    assert_eq!(Config::load(None, &binary).unwrap().num_outputs(), 1);

    let tmp = tempfile::tempdir().unwrap();
    tiny_data(tmp.path());
    // A kind missing from the list names the clip and the kind.
    let manifest = read_manifest(&tmp.path().join("val")).unwrap();
    let fake = &manifest.iter().find(|c| c.label == 1).unwrap().kind;
    let missing: Vec<String> = KINDS
        .iter()
        .filter(|k| *k != fake)
        .map(|k| k.to_string())
        .collect();
    let e = Dataset::load_with_classes(&tmp.path().join("val"), Some(&missing));
    let e = e.err().expect("unlisted kind").to_string();
    assert!(e.contains(fake.as_str()) && e.contains("clip"), "{e}");
    // The first class must be exactly the real clips.
    let swapped = ["desync", "real", "visual_manipulation", "audio_swap"].map(String::from);
    let e = Dataset::load_with_classes(&tmp.path().join("val"), Some(&swapped));
    let e = e.err().expect("real class not first").to_string();
    assert!(e.contains("real (label 0)"), "{e}");
}
