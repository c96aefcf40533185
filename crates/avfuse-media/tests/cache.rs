//! The shard cache: round trip, determinism, validation errors.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use avfuse_media::MediaError;
use avfuse_media::cache::{
    CacheLayout, ClipMeta, INDEX_FILE, MANIFEST_FILE, ShardWriter, read_index, read_manifest,
    read_split,
};
use avfuse_media::synth::{
    ClipGenerator, ClipKind, SynthConfig, clip_seed, kind_for_seed, synth_split,
};

fn cfg() -> SynthConfig {
    SynthConfig {
        frames: 4,
        image_size: 16,
        ..SynthConfig::default()
    }
}

/// All files of a directory, sorted by name, with their bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn round_trip_matches_generator() {
    let cfg = cfg();
    let tmp = tempfile::tempdir().unwrap();
    let done = AtomicU64::new(0);
    let summary = synth_split(&cfg, tmp.path(), "train", 10, 7, 4, &|n| {
        done.fetch_add(n, Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(done.load(Ordering::Relaxed), 10);
    assert_eq!(summary.clips, 10);
    assert_eq!(summary.per_kind.values().sum::<usize>(), 10);
    let dir = tmp.path().join("train");
    let on_disk: u64 = files(&dir).values().map(|b| b.len() as u64).sum();
    assert_eq!(summary.bytes, on_disk);
    assert_eq!(
        files(&dir).keys().cloned().collect::<Vec<_>>(),
        [
            "index.json",
            "manifest.jsonl",
            "shard-00000.safetensors",
            "shard-00001.safetensors",
            "shard-00002.safetensors"
        ]
    );

    let data = read_split(&dir).unwrap();
    let ix = &data.index;
    assert_eq!(
        (ix.format.as_str(), ix.version, ix.split.as_str()),
        ("avfuse-cache", 1, "train")
    );
    assert_eq!((ix.frames, ix.image_size, ix.channels), (4, 16, 3));
    assert_eq!(
        (ix.n_mels, ix.mel_frames, ix.num_clips),
        (64, cfg.mel_frames(), 10)
    );
    assert_eq!(
        ix.shards.iter().map(|s| s.clips).collect::<Vec<_>>(),
        [4, 4, 2]
    );
    assert_eq!(ix.mel, cfg.mel);
    assert_eq!(data.clips.len(), 10);

    let g = ClipGenerator::new(&cfg).unwrap();
    let (fl, ml) = (ix.frames_len(), ix.mel_len());
    let mut kinds = BTreeMap::new();
    for (i, m) in data.clips.iter().enumerate() {
        // Manifest consistent with the generator and with the shards.
        let seed = clip_seed(7, "train", i as u64);
        let kind = kind_for_seed(seed, cfg.fake_fraction);
        assert_eq!(m.clip_id, format!("train-{i:06}"));
        assert_eq!(m.seed, seed);
        assert_eq!(m.kind, kind.as_str());
        assert_eq!(m.label, kind.label());
        assert_eq!(data.labels[i], m.label);
        assert_eq!((m.shard, m.index_in_shard), (i / 4, i % 4));
        assert!(m.audio_present && m.video_present);
        assert_eq!((data.audio_present[i], data.video_present[i]), (1, 1));
        let clip = g.generate(kind, seed);
        assert_eq!(m.details, clip.details);
        assert_eq!(&data.frames[i * fl..(i + 1) * fl], &clip.frames[..]);
        assert_eq!(&data.mel[i * ml..(i + 1) * ml], &clip.mel[..]);
        *kinds.entry(m.kind.clone()).or_insert(0usize) += 1;
    }
    for (k, n) in &summary.per_kind {
        assert_eq!(kinds.get(k).copied().unwrap_or(0), *n, "{k}");
    }
    assert_eq!(read_index(&dir).unwrap(), data.index);
    assert_eq!(read_manifest(&dir).unwrap(), data.clips);
}

#[test]
fn same_seed_same_bytes_different_seed_different_bytes() {
    let cfg = cfg();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    // Different shard pipelining (rayon join) and thread interleaving must not matter.
    synth_split(&cfg, a.path(), "val", 9, 3, 2, &|_| {}).unwrap();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| synth_split(&cfg, b.path(), "val", 9, 3, 2, &|_| {}).unwrap());
    synth_split(&cfg, c.path(), "val", 9, 4, 2, &|_| {}).unwrap();
    let (fa, fb, fc) = (
        files(&a.path().join("val")),
        files(&b.path().join("val")),
        files(&c.path().join("val")),
    );
    assert_eq!(fa.len(), 2 + 5);
    assert_eq!(fa, fb, "same seed must give byte-identical files");
    assert_eq!(fa.keys().collect::<Vec<_>>(), fc.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        if name != INDEX_FILE {
            assert_ne!(bytes, &fc[name], "{name} should differ with another seed");
        }
    }
    // The index does not depend on the seed (only on layout and counts).
    assert_eq!(fa[INDEX_FILE], fc[INDEX_FILE]);
}

#[test]
fn shard_header_has_exactly_one_metadata_key() {
    let tmp = tempfile::tempdir().unwrap();
    synth_split(&cfg(), tmp.path(), "test", 3, 1, 8, &|_| {}).unwrap();
    let bytes = fs::read(tmp.path().join("test").join("shard-00000.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header["__metadata__"].as_object().unwrap();
    assert_eq!(meta.keys().collect::<Vec<_>>(), ["clip_ids"]);
    let ids: Vec<String> = serde_json::from_str(meta["clip_ids"].as_str().unwrap()).unwrap();
    assert_eq!(ids, ["test-000000", "test-000001", "test-000002"]);
    let obj = header.as_object().unwrap();
    for (name, dtype, shape) in [
        ("frames", "U8", vec![3, 4, 3, 16, 16]),
        ("mel", "F32", vec![3, 64, 17]),
        ("label", "U8", vec![3]),
        ("audio_present", "U8", vec![3]),
        ("video_present", "U8", vec![3]),
        ("audio", "F32", vec![3, cfg().audio_samples()]),
    ] {
        assert_eq!(obj[name]["dtype"], dtype, "{name}");
        assert_eq!(obj[name]["shape"], serde_json::json!(shape), "{name}");
    }
    // Index is pretty JSON with the fields in the documented order.
    let index = fs::read_to_string(tmp.path().join("test").join(INDEX_FILE)).unwrap();
    let keys: Vec<&str> = index
        .lines()
        .filter(|l| l.starts_with("  \"") && !l.starts_with("    "))
        .map(|l| l.trim().split('"').nth(1).unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "format",
            "version",
            "split",
            "frames",
            "image_size",
            "channels",
            "n_mels",
            "mel_frames",
            "sample_rate",
            "fps",
            "mel",
            "audio_samples",
            "num_clips",
            "shards"
        ]
    );
}

fn make_split(root: &Path, n: usize, shard: usize) -> std::path::PathBuf {
    synth_split(&cfg(), root, "s", n, 5, shard, &|_| {}).unwrap();
    root.join("s")
}

#[test]
fn truncated_shard_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = make_split(tmp.path(), 5, 2);
    let shard = dir.join("shard-00001.safetensors");
    let bytes = fs::read(&shard).unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 20, 4, 0] {
        fs::write(&shard, &bytes[..cut]).unwrap();
        let err = read_split(&dir).unwrap_err();
        assert!(matches!(err, MediaError::Format { .. }), "{err:?}");
        assert!(err.to_string().contains("shard-00001.safetensors"), "{err}");
    }
    fs::remove_file(&shard).unwrap();
    let err = read_split(&dir).unwrap_err();
    assert!(matches!(err, MediaError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("shard-00001.safetensors"), "{err}");
}

#[test]
fn missing_index_says_how_to_create_it() {
    let tmp = tempfile::tempdir().unwrap();
    let err = read_split(tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("index.json") && msg.contains("avfuse synth"),
        "{msg}"
    );
    assert!(msg.contains("avfuse prepare"), "{msg}");
}

#[test]
fn shape_and_count_mismatches_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = make_split(tmp.path(), 3, 2);
    let index_path = dir.join(INDEX_FILE);
    let original = fs::read_to_string(&index_path).unwrap();

    // Index claims another image size: the shard's `frames` tensor no longer fits.
    fs::write(
        &index_path,
        original.replace("\"image_size\": 16", "\"image_size\": 32"),
    )
    .unwrap();
    let msg = read_split(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("shard-00000.safetensors") && msg.contains("`frames`"),
        "{msg}"
    );

    // Index claims another mel length (and the audio length that goes with it: 6 hops).
    let mf = cfg().mel_frames();
    let hop = cfg().mel.hop_length;
    fs::write(
        &index_path,
        original
            .replace(&format!("\"mel_frames\": {mf}"), "\"mel_frames\": 7")
            .replace(
                &format!("\"audio_samples\": {}", cfg().audio_samples()),
                &format!("\"audio_samples\": {}", 6 * hop),
            ),
    )
    .unwrap();
    let msg = read_split(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("shard-00000.safetensors") && msg.contains("`mel`"),
        "{msg}"
    );

    // Unsupported version.
    fs::write(
        &index_path,
        original.replace("\"version\": 1", "\"version\": 2"),
    )
    .unwrap();
    let msg = read_split(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("index.json") && msg.contains("version 2"),
        "{msg}"
    );
    fs::write(&index_path, &original).unwrap();

    // Manifest with a missing line.
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = fs::read_to_string(&manifest_path).unwrap();
    let short: String = manifest.lines().take(2).map(|l| format!("{l}\n")).collect();
    fs::write(&manifest_path, short).unwrap();
    let msg = read_split(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("manifest.jsonl") && msg.contains("2 entries"),
        "{msg}"
    );

    // Manifest with a wrong label.
    fs::write(
        &manifest_path,
        manifest.replacen("\"label\":0", "\"label\":7", 1).replacen(
            "\"label\":1",
            "\"label\":7",
            1,
        ),
    )
    .unwrap();
    let msg = read_split(&dir).unwrap_err().to_string();
    assert!(msg.contains("disagree with manifest"), "{msg}");

    // Garbage manifest line.
    fs::write(&manifest_path, "{not json\n").unwrap();
    let msg = read_split(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("manifest.jsonl") && msg.contains("line 1"),
        "{msg}"
    );
    fs::write(&manifest_path, &manifest).unwrap();
    read_split(&dir).unwrap();
}

#[test]
fn writer_writes_index_last_and_validates_input() {
    let cfg = cfg();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    // No waveform stored: `push` takes frames and mel only.
    let layout = CacheLayout {
        audio_samples: 0,
        ..CacheLayout::from_synth(&cfg)
    };
    let mut w = ShardWriter::create(&dir, "w", layout.clone(), 2).unwrap();
    let frames = vec![7u8; layout.frames_len()];
    let mel = vec![-10.0f32; layout.mel_len()];
    let meta = || ClipMeta {
        kind: "real".into(),
        seed: 0,
        details: serde_json::json!({"source": "test"}),
    };
    for i in 0..3 {
        w.push(&format!("c{i}"), &frames, &mel, 0, true, i != 1, meta())
            .unwrap();
    }
    // One full shard is on disk, but no index yet: readers see no split.
    assert!(dir.join("shard-00000.safetensors").exists());
    assert!(!dir.join(INDEX_FILE).exists());
    assert!(read_split(&dir).is_err());
    let err = w
        .push("c0", &frames, &mel, 0, true, true, meta())
        .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    let err = w
        .push("x", &frames[1..], &mel, 0, true, true, meta())
        .unwrap_err();
    assert!(err.to_string().contains("frames"), "{err}");
    let err = w
        .push("y", &frames, &mel[1..], 0, true, true, meta())
        .unwrap_err();
    assert!(err.to_string().contains("mel"), "{err}");
    let index = w.finish().unwrap();
    assert_eq!(index.num_clips, 3);
    let data = read_split(&dir).unwrap();
    assert_eq!(data.video_present, [1, 0, 1]);
    assert!(!data.clips[1].video_present);
    assert_eq!(data.clips[2].details["source"], "test");
    assert!(data.frames.iter().all(|&b| b == 7));

    // Re-creating the writer invalidates the old split at once and drops stale shards.
    let w = ShardWriter::create(&dir, "w", layout.clone(), 2).unwrap();
    assert!(!dir.join(INDEX_FILE).exists());
    assert!(!dir.join("shard-00001.safetensors").exists());
    let index = w.finish().unwrap();
    assert_eq!(index.num_clips, 0);
    assert_eq!(read_split(&dir).unwrap().clips.len(), 0);

    assert!(ShardWriter::create(&dir, "w", layout.clone(), 0).is_err());
    assert!(ShardWriter::create(&dir, "../x", layout, 2).is_err());
}

#[test]
fn invalid_arguments_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = SynthConfig { frames: 0, ..cfg() };
    let err = synth_split(&bad, tmp.path(), "a", 2, 0, 2, &|_| {}).unwrap_err();
    assert!(err.to_string().contains("frames"), "{err}");
    assert!(synth_split(&cfg(), tmp.path(), "a/b", 2, 0, 2, &|_| {}).is_err());
    assert!(synth_split(&cfg(), tmp.path(), "a", 2, 0, 0, &|_| {}).is_err());
    assert!(ClipGenerator::new(&bad).is_err());
    let _ = ClipKind::Real;
}
