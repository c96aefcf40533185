//! Waveform augmentations in training: the cache stores each clip's audio samples beside its
//! log-mel (exactly the mel's input), so noise at an SNR and pitch shift act on the samples
//! and the loader recomputes the log-mel with the cache's own settings. A negligible noise
//! gives back the cached mel; a strong one changes it; a cache without waveforms falls back
//! to the log-mel augmentations.

use avfuse_media::augment::AugmentConfig;
use avfuse_media::cache::{CacheLayout, ClipMeta, ShardWriter, read_split};
use avfuse_media::mel::LogMel;
use avfuse_media::synth::{SynthConfig, synth_split};
use avfuse_train::data::{Augment, BatchOptions, Dataset, InputFill};

fn synth(root: &std::path::Path) -> SynthConfig {
    let cfg = SynthConfig {
        frames: 4,
        image_size: 16,
        ..SynthConfig::default()
    };
    synth_split(&cfg, root, "train", 6, 3, 4, &|_| {}).unwrap();
    cfg
}

/// Audio only: no video change, no gain, no masks; noise always, at `snr` dB.
fn noise_only(snr: f32) -> AugmentConfig {
    AugmentConfig {
        flip_p: 0.0,
        crop_p: 0.0,
        jitter_p: 0.0,
        blur_p: 0.0,
        noise_p: 0.0,
        jpeg_p: 0.0,
        audio_noise_p: 1.0,
        snr_db: (snr, snr),
        gain_db: 0.0,
        pitch_p: 0.0,
        time_masks: (0, 0),
        freq_masks: (0, 0),
        ..AugmentConfig::default()
    }
}

fn mel_batch(ds: &Dataset, policy: Option<AugmentConfig>) -> Vec<f32> {
    let idx: Vec<usize> = (0..ds.len()).collect();
    let pres = vec![[1u8, 1]; ds.len()];
    let opts = BatchOptions {
        fill: InputFill::Present,
        augment: policy.map(|policy| Augment { policy, seed: 11 }),
    };
    ds.host_batch_with(&idx, &pres, &ds.normalizer(), &opts).mel
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_cache_stores_the_samples_each_mel_was_computed_from() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = synth(dir.path());
    let data = read_split(&dir.path().join("train")).unwrap();
    let n = data.index.audio_samples;
    assert_eq!(n, cfg.audio_samples());
    assert_eq!(data.audio.len(), data.clips.len() * n);
    let logmel = LogMel::new(&data.index.mel).unwrap();
    let per = data.index.n_mels * data.index.mel_frames;
    for i in 0..data.clips.len() {
        let mel = logmel.compute(&data.audio[i * n..(i + 1) * n]);
        assert_eq!(mel, data.mel[i * per..(i + 1) * per], "clip {i}");
    }
}

#[test]
fn noise_and_pitch_act_on_the_waveform_and_the_mel_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path());
    let ds = Dataset::load(&dir.path().join("train")).unwrap();
    assert!(ds.waveform_augmentation(&noise_only(20.0)));
    let clean = mel_batch(&ds, None);
    // Noise 200 dB below the signal: the recomputed mel is the cached one.
    let faint = mel_batch(&ds, Some(noise_only(200.0)));
    let d = max_abs_diff(&clean, &faint);
    assert!(d < 1e-3, "recomputed mel differs by {d}");
    // 0 dB SNR: a different input.
    let loud = mel_batch(&ds, Some(noise_only(0.0)));
    assert!(max_abs_diff(&clean, &loud) > 0.5);
    // Pitch shift alone also changes it, and is deterministic in the seed.
    let pitch = AugmentConfig {
        audio_noise_p: 0.0,
        pitch_p: 1.0,
        ..noise_only(0.0)
    };
    let shifted = mel_batch(&ds, Some(pitch.clone()));
    assert!(max_abs_diff(&clean, &shifted) > 0.1);
    assert_eq!(shifted, mel_batch(&ds, Some(pitch)));
}

#[test]
fn a_cache_without_waveforms_falls_back_to_the_log_mel_augmentations() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = synth(dir.path());
    let full = read_split(&dir.path().join("train")).unwrap();
    // Rewrite the split as a cache of the old kind: the same clips, no `audio` tensor.
    let old = dir.path().join("old");
    let layout = CacheLayout {
        audio_samples: 0,
        ..CacheLayout::from_synth(&cfg)
    };
    let mut w = ShardWriter::create(&old, "train", layout, 4).unwrap();
    let (fl, ml) = (full.index.frames_len(), full.index.mel_len());
    for (i, c) in full.clips.iter().enumerate() {
        let meta = ClipMeta {
            kind: c.kind.clone(),
            seed: c.seed,
            details: c.details.clone(),
        };
        let (frames, mel) = (
            &full.frames[i * fl..(i + 1) * fl],
            &full.mel[i * ml..(i + 1) * ml],
        );
        w.push(&c.clip_id, frames, mel, c.label, true, true, meta)
            .unwrap();
    }
    w.finish().unwrap();
    let ds = Dataset::load(&old).unwrap();
    assert!(ds.data.audio.is_empty());
    assert!(!ds.waveform_augmentation(&noise_only(0.0)));
    // The waveform noise is skipped: with no gain and no masks the mel is unchanged.
    assert_eq!(mel_batch(&ds, Some(noise_only(0.0))), mel_batch(&ds, None));
    // Pushing samples to a layout that stores none is an error naming the clip.
    let mut w = ShardWriter::create(&dir.path().join("x"), "train", ds_layout(&cfg), 4).unwrap();
    let e = w
        .push_with_audio(
            "c0",
            avfuse_media::cache::ClipTensors {
                frames: &full.frames[..fl],
                mel: &full.mel[..ml],
                audio: &[0.0; 3],
            },
            0,
            true,
            true,
            ClipMeta {
                kind: "real".into(),
                seed: 0,
                details: serde_json::Value::Null,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("c0") && e.contains("audio"), "{e}");
}

fn ds_layout(cfg: &SynthConfig) -> CacheLayout {
    CacheLayout {
        audio_samples: 0,
        ..CacheLayout::from_synth(cfg)
    }
}
