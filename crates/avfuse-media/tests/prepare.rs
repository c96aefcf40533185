//! `prepare`: output, failures, resumability after a simulated crash, `shard i/N` parts.
#![cfg(feature = "ffmpeg")]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use avfuse_media::cache;
use avfuse_media::mel::MelConfig;
use avfuse_media::prepare::{self, PrepareOptions};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/media")
        .join(name)
}

/// A dataset tree: train has 5 clips (one not a video), val 2.
fn make_dataset(root: &Path) {
    let clips = [
        ("train", "a_h264", "h264_aac.mp4", 0),
        ("train", "b_hevc", "hevc_aac.mp4", 1),
        ("train", "c_mpeg4", "mpeg4_aac.mp4", 0),
        ("train", "d_noaudio", "noaudio.mp4", 1),
        ("train", "e_broken", "not_video.mp4", 1),
        ("val", "v1", "h264_aac.mp4", 1),
        ("val", "v2", "mpeg4_aac.mp4", 0),
    ];
    for (split, id, file, label) in clips {
        let d = root.join(split).join(id);
        fs::create_dir_all(&d).unwrap();
        fs::copy(fixture(file), d.join("video.mp4")).unwrap();
        fs::write(
            d.join("meta.json"),
            format!(r#"{{"label": {label}, "source_file": "{file}"}}"#),
        )
        .unwrap();
    }
}

fn options(root: &Path, out: &Path) -> PrepareOptions {
    let mut o = PrepareOptions {
        data_root: root.to_path_buf(),
        out: out.to_path_buf(),
        frames_per_clip: 6,
        crop_size: 32,
        shard_size: 2,
        mel: MelConfig {
            n_mels: 40,
            ..MelConfig::default()
        },
        ..PrepareOptions::default()
    };
    o.faces.detect_max_side = 96;
    o
}

/// Every file under `dir` (relative path -> bytes).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn prepare_writes_cache_splits_and_skips_bad_clips() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, out) = (tmp.path().join("data"), tmp.path().join("out"));
    make_dataset(&root);
    let calls = std::sync::atomic::AtomicUsize::new(0);
    let report = prepare::prepare(&options(&root, &out), &|done, total| {
        assert!(done <= total && total == 7);
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    })
    .unwrap();
    assert_eq!(calls.into_inner(), 7);
    assert!(!report.interrupted);
    let train = &report.splits[0];
    assert_eq!(
        (train.split.as_str(), train.clips, train.written),
        ("train", 5, 4)
    );
    assert!(train.complete);
    assert_eq!(train.failed.len(), 1);
    assert_eq!(train.failed[0].clip_id, "e_broken");
    assert!(train.failed[0].error.contains("video.mp4"));
    assert_eq!(train.clips_without_audio, 1);
    // Test patterns have no faces: every frame is a centre crop, and it is counted.
    assert_eq!(train.clips_without_face, 4);
    assert_eq!(train.fallback_frames, 4 * 6);

    let split = cache::read_split(&out.join("train")).unwrap();
    assert_eq!(split.index.num_clips, 4);
    assert_eq!(split.index.frames, 6);
    assert_eq!(split.index.image_size, 32);
    assert_eq!(split.index.n_mels, 40);
    // 6 frames at 25 fps = 0.24 s = 3840 samples -> 1 + 3840 / 160 mel frames.
    assert_eq!(split.index.mel_frames, 25);
    assert_eq!(split.index.shards.len(), 2);
    let ids: Vec<_> = split.clips.iter().map(|c| c.clip_id.as_str()).collect();
    assert_eq!(ids, ["a_h264", "b_hevc", "c_mpeg4", "d_noaudio"]);
    assert_eq!(split.labels, vec![0, 1, 0, 1]);
    assert_eq!(split.audio_present, vec![1, 1, 1, 0]);
    assert_eq!(
        split.clips[0].details["meta"]["source_file"],
        "h264_aac.mp4"
    );
    // No work files remain.
    assert!(!out.join("train/.work").exists());
    assert_eq!(
        cache::read_split(&out.join("val")).unwrap().index.num_clips,
        2
    );

    // A rerun of a complete output does nothing and changes nothing.
    let before = tree(&out);
    let again = prepare::prepare(&options(&root, &out), &|_, _| {}).unwrap();
    assert!(again.splits.iter().all(|s| s.processed == 0 && s.complete));
    assert_eq!(tree(&out), before);
}

#[test]
fn resumes_after_a_crash_with_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    make_dataset(&root);
    let reference = tmp.path().join("ref");
    prepare::prepare(&options(&root, &reference), &|_, _| {}).unwrap();

    let out = tmp.path().join("out");
    // At most 1 + 2 = 3 clips in the two interrupted runs, fewer than the 5 of train, so
    // train cannot be complete whichever clips the threads claim first.
    for k in [1, 2] {
        let mut o = options(&root, &out);
        o.stop_after = Some(k);
        let r = prepare::prepare(&o, &|_, _| {}).unwrap();
        assert!(r.interrupted);
        let processed: usize = r.splits.iter().map(|s| s.processed + s.failed.len()).sum();
        assert!(processed <= k, "{r:?}");
    }
    // Not complete: no index for the train split, only work files.
    assert!(!out.join("train").join(cache::INDEX_FILE).exists());
    // Resuming with other options is refused.
    let mut other = options(&root, &out);
    other.crop_size = 48;
    let e = prepare::prepare(&other, &|_, _| {}).unwrap_err();
    assert!(e.to_string().contains("options.json"), "{e}");
    // Resume to the end.
    let r = prepare::prepare(&options(&root, &out), &|_, _| {}).unwrap();
    assert!(!r.interrupted);
    // The 3 clips of the interrupted runs are reused (or, for the broken one, reported
    // from its failure record); every clip is accounted for exactly once.
    let reused: usize = r.splits.iter().map(|s| s.reused).sum();
    let processed: usize = r.splits.iter().map(|s| s.processed).sum();
    let failed: usize = r.splits.iter().map(|s| s.failed.len()).sum();
    assert!((2..=3).contains(&reused), "{r:?}");
    assert_eq!(failed, 1, "{r:?}");
    assert_eq!(reused + processed + failed, 7, "{r:?}");
    assert_eq!(tree(&out), tree(&reference));
}

#[test]
fn shard_parts_partition_and_merge_to_the_unsharded_output() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    make_dataset(&root);
    let reference = tmp.path().join("ref");
    prepare::prepare(&options(&root, &reference), &|_, _| {}).unwrap();
    let out = tmp.path().join("out");
    let n = 3;
    let mut seen = Vec::new();
    for i in 0..n {
        let mut o = options(&root, &out);
        o.shard = Some((i, n));
        let r = prepare::prepare(&o, &|_, _| {}).unwrap();
        for s in &r.splits {
            let dir = out.join(prepare::part_dir_name(i, n)).join(&s.split);
            for c in cache::read_manifest(&dir).unwrap() {
                seen.push((s.split.clone(), c.clip_id));
            }
            seen.extend(
                s.failed
                    .iter()
                    .map(|f| (f.split.clone(), f.clip_id.clone())),
            );
        }
    }
    seen.sort();
    let before = seen.len();
    seen.dedup();
    assert_eq!(seen.len(), before, "a clip in two parts");
    assert_eq!(seen.len(), 7, "every clip in one part");
    prepare::merge_parts(&out, n).unwrap();
    for split in ["train", "val"] {
        let merged = tree(&out.join(split));
        let want = tree(&reference.join(split));
        for name in ["index.json", "manifest.jsonl", "shard-00000.safetensors"] {
            assert_eq!(
                merged.get(Path::new(name)),
                want.get(Path::new(name)),
                "{split}/{name}"
            );
        }
        let shards = |t: &BTreeMap<PathBuf, Vec<u8>>| {
            t.keys()
                .filter(|k| k.to_string_lossy().starts_with("shard-"))
                .count()
        };
        assert_eq!(shards(&merged), shards(&want));
    }
}
