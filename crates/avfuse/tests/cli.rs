//! The binary on bad input (one-line errors, non-zero exit, nothing half-written), synth
//! determinism through the CLI, and a tiny end-to-end quickstart.

use std::path::Path;
use std::process::{Command, Output};

fn avfuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_avfuse"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run avfuse")
}

/// Assert failure with a single-line error mentioning every `needle`.
fn fails_with(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure, stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    for n in needles {
        assert!(
            lines[0].contains(n),
            "error {:?} does not mention {n:?}",
            lines[0]
        );
    }
}

const TINY: &[&str] = &[
    "--set",
    "dataset.synth.train_clips=16",
    "--set",
    "dataset.synth.val_clips=8",
    "--set",
    "dataset.synth.test_clips=8",
    "--set",
    "dataset.synth.frames=4",
    "--set",
    "dataset.synth.image_size=32",
    "--set",
    "model.video.channels=[4,8]",
    "--set",
    "model.audio.channels=[4,8]",
    "--set",
    "training.epochs=1",
    "--set",
    "training.batch_size=8",
];

fn dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn config_errors_are_one_line_and_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = out.to_str().unwrap();

    fails_with(
        &avfuse(&["train", "--out", o, "--config", "/no/such/cfg.yaml"]),
        &["/no/such/cfg.yaml"],
    );

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "training: [1, 2\n").unwrap();
    fails_with(
        &avfuse(&["train", "--out", o, "--config", bad.to_str().unwrap()]),
        &["bad.yaml", "invalid YAML"],
    );

    let unknown = tmp.path().join("unknown.yaml");
    std::fs::write(&unknown, "fusion:\n  modality_dropout_probb: 0.2\n").unwrap();
    fails_with(
        &avfuse(&["train", "--out", o, "--config", unknown.to_str().unwrap()]),
        &["fusion.modality_dropout_probb", "unknown field"],
    );
    fails_with(
        &avfuse(&[
            "train",
            "--out",
            o,
            "--set",
            "fusion.modality_dropout_prob=1.5",
        ]),
        &["fusion.modality_dropout_prob = 1.5: must be in [0, 1]"],
    );
    fails_with(
        &avfuse(&["train", "--out", o, "--device", "tpu"]),
        &["--device", "tpu"],
    );
    assert!(!out.exists(), "nothing may be written on a config error");
}

#[test]
fn missing_data_and_unwritable_output_are_clean_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let missing = tmp.path().join("no-data");
    fails_with(
        &avfuse(&[
            "train",
            "--data",
            missing.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]),
        &["no-data", "no such directory"],
    );
    assert!(!out.exists());

    // An output "directory" below a regular file can never be created, even as root.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let under_file = file.join("out");
    let mut args = vec![
        "synth",
        "--out",
        under_file.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend_from_slice(TINY);
    fails_with(&avfuse(&args), &["file/out"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn synth_is_deterministic_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    for (dir, seed) in [(&a, "3"), (&b, "3"), (&c, "4")] {
        let mut args = vec![
            "synth",
            "--out",
            dir.to_str().unwrap(),
            "--clips",
            "12",
            "--seed",
            seed,
            "--no-progress",
        ];
        args.extend_from_slice(TINY);
        let o = avfuse(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (da, db, dc) = (dir_bytes(&a), dir_bytes(&b), dir_bytes(&c));
    assert!(
        da.len() >= 9,
        "three splits with index, manifest and a shard each: {da:?}"
    );
    assert!(da == db, "same seed must give byte-identical files");
    assert!(da != dc, "another seed must give other data");
    let manifest = std::fs::read_to_string(a.join("train/manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 8); // 70 % of 12, rounded
    for line in manifest.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            v["label"].is_u64() && v["kind"].is_string() && v["seed"].is_u64(),
            "{line}"
        );
    }

    let mut again = vec![
        "synth",
        "--out",
        a.to_str().unwrap(),
        "--clips",
        "12",
        "--no-progress",
    ];
    again.extend_from_slice(TINY);
    fails_with(&avfuse(&again), &["already holds", "--force"]);
    assert!(dir_bytes(&a) == da);
}

#[test]
fn tiny_quickstart_writes_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("qs");
    let mut args = vec![
        "quickstart",
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend_from_slice(TINY);
    let o = avfuse(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    for key in ["auc", "ap", "accuracy", "f1"] {
        assert!(
            report["test"][key].is_number(),
            "test.{key} missing: {report}"
        );
    }
    for set in ["both", "video_only", "audio_only"] {
        assert!(
            report["robustness"][set]["auc"].is_number(),
            "robustness.{set}.auc missing"
        );
    }
    assert!(report["train_seconds"].as_f64().unwrap() > 0.0);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("video_only") && stdout.contains("audio_only"),
        "{stdout}"
    );
    // The quickstart's eval: prediction files at both levels, robustness tables, plots.
    let ev: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval/eval.json")).unwrap()).unwrap();
    // 3 clean settings + 12 default corruptions x 2 sets keeping the corrupted modality.
    assert_eq!(ev["robustness"].as_array().unwrap().len(), 27, "{ev}");
    assert_eq!(ev["level"], "sample");
    assert_eq!(ev["video_ids"], "clip_id");
    assert!(ev["results"]["both"]["video_level"]["report"]["auc"].is_number());
    for f in ev["files"].as_array().unwrap() {
        let f = out.join("eval").join(f.as_str().unwrap());
        let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        if f.extension().is_some_and(|e| e == "png") {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", f.display());
        }
    }
    for png in [
        "roc.png",
        "pr.png",
        "robustness_noise.png",
        "robustness_blur.png",
        "robustness_jpeg.png",
        "robustness_audio_snr.png",
        "training_curves.png",
    ] {
        assert!(out.join("eval/plots").join(png).is_file(), "{png} missing");
    }
    let md = std::fs::read_to_string(out.join("eval/robustness.md")).unwrap();
    assert!(md.contains("audio_snr") && md.contains("blur"), "{md}");
    // TensorBoard: per-step loss and lr, per-epoch validation metrics and gradient norms.
    let tb: Vec<_> = std::fs::read_dir(out.join("run/tensorboard"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(tb.len(), 1, "{tb:?}");
    let events = avfuse_report::read_events(&tb[0]).unwrap();
    let tags: std::collections::BTreeSet<String> = events
        .iter()
        .flat_map(|e| e.scalars.iter().map(|s| s.tag.clone()))
        .collect();
    for tag in [
        "train/loss",
        "train/lr",
        "epoch/val_auc",
        "epoch/train_loss",
        "grad_norm/video_encoder",
        "grad_norm/audio_encoder",
    ] {
        assert!(tags.contains(tag), "{tag} not in {tags:?}");
    }
    let metrics = std::fs::read_to_string(out.join("run/metrics.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert!(first["grad_norm_video"].as_f64().unwrap() > 0.0, "{first}");

    // `avfuse eval` on the quickstart's checkpoint: default output next to the run.
    let best = out.join("run/checkpoints/best.avfc");
    let data = out.join("data");
    let (b, d) = (best.to_str().unwrap(), data.to_str().unwrap());
    let o = avfuse(&[
        "eval",
        "--checkpoint",
        b,
        "--data",
        d,
        "--modalities",
        "both,audio_only",
        "--corruptions",
        "blur:2;audio_snr:10",
        "--aggregation",
        "max",
        "--no-plots",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ev: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run/eval-test/eval.json")).unwrap())
            .unwrap();
    // --corruptions restricts the grid: 2 clean rows, blur with `both` only, SNR with both.
    assert_eq!(
        ev["robustness"].as_array().unwrap().len(),
        2 + 1 + 2,
        "{ev}"
    );
    assert!(ev["results"]["both"]["metrics"]["auc"].is_number(), "{ev}");
    assert!(ev["results"]["video_only"].is_null());
    assert_eq!(ev["clips"], 8);
    assert_eq!(
        ev["results"]["both"]["video_level"]["aggregation"]["method"],
        "max"
    );
    assert!(!out.join("run/eval-test/plots").exists());
    let csv = std::fs::read_to_string(out.join("run/eval-test/predictions_samples.csv")).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("id,video_id,label,score,pred,modality_set,corruption")
    );
    // 8 clips x 5 settings, plus the header.
    assert_eq!(csv.lines().count(), 1 + 8 * 5);
    assert!(csv.contains(",audio_only,audio_snr@10"), "{csv}");
    fails_with(
        &avfuse(&[
            "eval",
            "--checkpoint",
            b,
            "--data",
            d,
            "--corruptions",
            "fog:1",
        ]),
        &["fog"],
    );
    fails_with(
        &avfuse(&[
            "eval",
            "--checkpoint",
            b,
            "--data",
            d,
            "--modalities",
            "both,sound",
        ]),
        &["sound"],
    );
    fails_with(
        &avfuse(&["eval", "--checkpoint", b, "--data", d, "--split", "nope"]),
        &["nope"],
    );
    let broken = tmp.path().join("broken.avfc");
    let bytes = std::fs::read(&best).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(
        &avfuse(&[
            "eval",
            "--checkpoint",
            broken.to_str().unwrap(),
            "--data",
            d,
        ]),
        &["broken.avfc", "truncated"],
    );

    // A second quickstart into the same directory needs --force...
    fails_with(&avfuse(&args), &["--force"]);
    // ...even when only its data is left: a dataset is never replaced silently.
    std::fs::remove_dir_all(out.join("run")).unwrap();
    std::fs::remove_file(out.join("report.json")).unwrap();
    let manifest = std::fs::read(out.join("data/train/manifest.jsonl")).unwrap();
    fails_with(&avfuse(&args), &["--force"]);
    assert_eq!(
        std::fs::read(out.join("data/train/manifest.jsonl")).unwrap(),
        manifest
    );
    // With --force it runs again.
    let mut forced = args.clone();
    forced.push("--force");
    let o = avfuse(&forced);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn every_command_documents_its_flags() {
    for (cmd, flags) in [
        (
            "quickstart",
            &["--out", "--config", "--set", "--device", "--force"][..],
        ),
        (
            "synth",
            &["--out", "--clips", "--seed", "--config", "--set", "--force"][..],
        ),
        (
            "train",
            &[
                "--data", "--out", "--resume", "--config", "--set", "--device",
            ][..],
        ),
        (
            "eval",
            &[
                "--checkpoint",
                "--data",
                "--split",
                "--out",
                "--modalities",
                "--device",
            ][..],
        ),
    ] {
        let o = avfuse(&[cmd, "--help"]);
        assert!(o.status.success());
        let help = String::from_utf8_lossy(&o.stdout);
        for f in flags {
            assert!(
                help.contains(f),
                "`avfuse {cmd} --help` does not mention {f}"
            );
        }
    }
}

#[test]
fn train_stops_and_resumes_from_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    let mut synth = vec!["synth", "--out", data.to_str().unwrap(), "--no-progress"];
    synth.extend_from_slice(TINY);
    assert!(avfuse(&synth).status.success());

    let mut first = vec![
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
    ];
    first.extend_from_slice(TINY);
    first.extend_from_slice(&[
        "--set",
        "training.epochs=2",
        "--stop-after-epochs",
        "1",
        "--no-progress",
    ]);
    let o = avfuse(&first);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = |p: &Path| {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(lines(&run), 1);

    // No --config: the run's own config.yaml (epochs = 2) is used.
    let o = avfuse(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--resume",
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(lines(&run), 2);
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["epochs_completed"], 2);

    let elsewhere = tmp.path().join("elsewhere");
    fails_with(
        &avfuse(&["train", "--out", elsewhere.to_str().unwrap(), "--resume"]),
        &["config.yaml", "does not exist"],
    );
}

/// `doctor` reports every check; with `--gpu` it fails on a build without CUDA, naming it.
#[test]
fn doctor_reports_and_gpu_mode_fails_without_cuda() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_avfuse"))
            .args(args)
            .env("RUST_LOG", "error")
            .env("AVFUSE_KERNEL_CACHE", dir.path().join("kernels"))
            .output()
            .expect("run avfuse")
    };
    let out = run(&["doctor"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "build: cuda feature",
        "driver: libcuda",
        "runtime: libnvrtc",
        "toolkit: CUDA headers",
        "multi-GPU: NCCL",
        "kernel cache",
    ] {
        assert!(text.contains(name), "missing check {name:?} in:\n{text}");
    }
    // The cache directory was created and reported writable.
    assert!(dir.path().join("kernels").is_dir());
    assert!(text.contains(&dir.path().join("kernels").display().to_string()));
    if !cfg!(feature = "cuda") {
        assert!(text.contains("MISSING build: cuda feature"), "{text}");
        fails_with(
            &run(&["doctor", "--gpu"]),
            &["GPU requirements missing", "build: cuda feature"],
        );
    }
}

/// Without the ffmpeg feature, `prepare` explains how to get it (one line, non-zero exit).
#[cfg(not(feature = "ffmpeg"))]
#[test]
fn prepare_without_ffmpeg_says_how_to_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    fails_with(
        &avfuse(&["prepare", "--data-root", &d, "--out", &d]),
        &["--features ffmpeg"],
    );
}

/// `prepare` on real (fixture) videos: a cache split with an index, the corrupt file
/// skipped and reported, a rerun finds everything done; `check-shortcuts` reports by label;
/// `train` runs an epoch on the cache with waveform augmentation.
#[cfg(feature = "ffmpeg")]
#[test]
fn prepare_and_check_shortcuts_on_fixture_videos() {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../avfuse-media/tests/fixtures/media");
    let dir = tempfile::tempdir().unwrap();
    let videos = dir.path().join("videos");
    for (clip, file, label) in [
        ("a", "h264_aac.mp4", 0),
        ("b", "mpeg4_aac.mp4", 1),
        ("c", "noaudio.mp4", 1),
        ("bad", "not_video.mp4", 0),
    ] {
        let d = videos.join("train").join(clip);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(fixtures.join(file), d.join("video.mp4")).unwrap();
        std::fs::write(d.join("meta.json"), format!("{{\"label\": {label}}}")).unwrap();
    }
    let cache = dir.path().join("cache");
    let (v, c) = (videos.display().to_string(), cache.display().to_string());
    let args = [
        "prepare",
        "--data-root",
        &v,
        "--out",
        &c,
        "--frames",
        "4",
        "--crop-size",
        "32",
        "--no-progress",
    ];
    let out = avfuse(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 clips written, 1 skipped"), "{stdout}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cache.join("train/index.json")).unwrap()).unwrap();
    assert_eq!(index["num_clips"], 3);
    assert_eq!(index["image_size"], 32);
    let report = std::fs::read_to_string(cache.join("prepare-report.json")).unwrap();
    assert!(report.contains("\"clip_id\": \"bad\""), "{report}");
    // A rerun does nothing new and succeeds.
    let again = avfuse(&args);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // The shortcut report covers both labels and names the unreadable file.
    let sc = avfuse(&["check-shortcuts", "--data-root", &v]);
    assert!(
        sc.status.success(),
        "{}",
        String::from_utf8_lossy(&sc.stderr)
    );
    let text = String::from_utf8_lossy(&sc.stdout);
    let json_end = text.rfind('}').unwrap() + 1;
    let rep: serde_json::Value = serde_json::from_str(&text[..json_end]).unwrap();
    assert!(
        rep["by_label"]["0"].is_object() && rep["by_label"]["1"].is_object(),
        "{text}"
    );
    assert_eq!(rep["failed"].as_array().unwrap().len(), 1, "{text}");
    assert_eq!(rep["by_label"]["1"]["no_audio"], 1, "{text}");
    // The cache of real decoded clips trains: one epoch (val = train here), with waveform
    // augmentation (noise, pitch) reading the audio samples the cache stores.
    assert_eq!(index["audio_samples"], 4 * 640, "{index}");
    let run = dir.path().join("run");
    let r = run.display().to_string();
    let mut train = vec!["train", "--data", &c, "--out", &r, "--no-progress"];
    for set in [
        "dataset.val_split=train",
        "dataset.augment={audio_noise_p: 1.0, pitch_p: 1.0}",
        "model.video.channels=[4, 8]",
        "model.video.embed_dim=8",
        "model.audio.channels=[4, 8]",
        "model.audio.embed_dim=8",
        "fusion.dim=8",
        "model.head.hidden=8",
        "training.batch_size=2",
        "training.epochs=1",
    ] {
        train.extend(["--set", set]);
    }
    let out = avfuse(&train);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 1, "{metrics}");
}
