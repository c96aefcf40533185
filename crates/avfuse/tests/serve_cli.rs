//! `avfuse predict` through the binary on the media fixture directory (with FFmpeg), and
//! both `predict` and `serve` refusing with one line without it.

use std::path::{Path, PathBuf};
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

fn media_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../avfuse-media/tests/fixtures/media")
}

/// A tiny random checkpoint (16 frames of 32 px) in `dir`.
fn checkpoint(dir: &Path) -> String {
    let p = dir.join("tiny.avfc");
    avfuse_serve::testing::RandomCheckpoint::tiny(16, 32)
        .build()
        .unwrap()
        .save(&p)
        .unwrap();
    p.display().to_string()
}

#[cfg(feature = "ffmpeg")]
#[test]
fn predict_a_directory_writes_one_line_per_file_failures_included() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let media = media_dir().display().to_string();
    let out_path = dir.path().join("results.jsonl");
    let out = out_path.display().to_string();
    let run = avfuse(&[
        "predict",
        &media,
        "--checkpoint",
        &ckpt,
        "--out",
        &out,
        "--no-progress",
    ]);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("predicted 4 file(s), 2 failed"), "{err}");
    let text = std::fs::read_to_string(&out_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<String> = lines
        .iter()
        .map(|v| {
            Path::new(v["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "h264_aac.mp4",
            "hevc_aac.mp4",
            "mpeg4_aac.mp4",
            "noaudio.mp4",
            "not_video.mp4",
            "truncated.mp4"
        ]
    );
    for v in &lines[..4] {
        let p = v["fake_probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{v}");
        assert_eq!(v["windows"].as_array().unwrap().len(), 3, "{v}");
        assert!(v["label"].is_string() && v["ms"].is_number(), "{v}");
        assert!(v["per_modality"]["video"].is_number(), "{v}");
    }
    assert_eq!(lines[0]["audio_present"], true);
    assert!(lines[0]["per_modality"]["audio"].is_number());
    assert_eq!(lines[3]["audio_present"], false);
    assert!(lines[3]["per_modality"]["audio"].is_null());
    for v in &lines[4..] {
        assert_eq!(v["error"], "invalid_media", "{v}");
        assert!(v["detail"].as_str().unwrap().contains(".mp4"), "{v}");
        assert!(v.get("fake_probability").is_none());
    }

    // One file to stdout: the same prediction as in the directory run.
    let one = media_dir().join("h264_aac.mp4").display().to_string();
    let run = avfuse(&["predict", &one, "--checkpoint", &ckpt, "--no-progress"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["fake_probability"], lines[0]["fake_probability"]);
    assert_eq!(v["windows"], lines[0]["windows"]);

    // Whole-run problems are one-line errors.
    let missing = dir.path().join("missing.avfc").display().to_string();
    fails_with(
        &avfuse(&["predict", &media, "--checkpoint", &missing]),
        &["missing.avfc"],
    );
    let empty = tempfile::tempdir().unwrap();
    let empty_s = empty.path().display().to_string();
    fails_with(
        &avfuse(&["predict", &empty_s, "--checkpoint", &ckpt]),
        &["no video files"],
    );
    fails_with(
        &avfuse(&["serve", "--checkpoint", &ckpt, "--addr", "nowhere"]),
        &["serve.addr"],
    );
}

#[cfg(not(feature = "ffmpeg"))]
#[test]
fn predict_and_serve_need_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint(dir.path());
    let media = media_dir().display().to_string();
    fails_with(
        &avfuse(&["predict", &media, "--checkpoint", &ckpt]),
        &["without FFmpeg", "--features ffmpeg"],
    );
    fails_with(
        &avfuse(&["serve", "--checkpoint", &ckpt]),
        &["without FFmpeg", "--features ffmpeg"],
    );
}
