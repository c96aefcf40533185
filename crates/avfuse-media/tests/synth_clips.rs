//! Structure of generated clips: shapes, purity, and which modality each kind touches.

use avfuse_media::mel::LogMel;
use avfuse_media::synth::{ClipGenerator, ClipKind, SynthConfig, generate_clip};

fn small() -> SynthConfig {
    SynthConfig {
        frames: 8,
        image_size: 32,
        ..SynthConfig::default()
    }
}

#[test]
fn default_shapes() {
    let cfg = SynthConfig::default();
    cfg.validate().unwrap();
    assert_eq!(cfg.audio_samples(), 10_240);
    assert_eq!(cfg.mel_frames(), 65);
    let c = generate_clip(&cfg, ClipKind::Real, 1);
    assert_eq!(c.frames.len(), 16 * 3 * 64 * 64);
    assert_eq!(c.audio.len(), 10_240);
    assert_eq!(c.mel.len(), 64 * 65);
    assert_eq!(c.label(), 0);
    assert!(c.audio.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    // The mel is exactly LogMel of the audio.
    assert_eq!(c.mel, LogMel::new(&cfg.mel).unwrap().compute(&c.audio));
}

#[test]
fn generation_is_pure() {
    let cfg = small();
    for kind in ClipKind::ALL {
        let a = generate_clip(&cfg, kind, 42);
        let b = generate_clip(&cfg, kind, 42);
        assert_eq!(a.frames, b.frames);
        assert_eq!(a.audio, b.audio);
        assert_eq!(a.mel, b.mel);
        assert_eq!(a.details, b.details);
        let c = generate_clip(&cfg, kind, 43);
        assert_ne!(a.frames, c.frames);
        assert_ne!(a.audio, c.audio);
    }
}

/// With the same seed, kinds share the components they do not change: this shows which
/// modality each fake kind touches.
#[test]
fn kinds_touch_only_their_modality() {
    let cfg = small();
    let g = ClipGenerator::new(&cfg).unwrap();
    let n = cfg.image_size;
    for seed in 0..24u64 {
        let real = g.generate(ClipKind::Real, seed);
        let desync = g.generate(ClipKind::Desync, seed);
        let swap = g.generate(ClipKind::AudioSwap, seed);
        let vm = g.generate(ClipKind::VisualManipulation, seed);
        // Desync / AudioSwap: same video, different audio.
        assert_eq!(desync.frames, real.frames);
        assert_eq!(swap.frames, real.frames);
        assert_ne!(desync.audio, real.audio);
        assert_ne!(swap.audio, real.audio);
        // VisualManipulation: same audio, video changed only in the lower-central mouth
        // area.
        assert_eq!(vm.audio, real.audio);
        assert_ne!(vm.frames, real.frames);
        for (i, (a, b)) in vm.frames.iter().zip(&real.frames).enumerate() {
            if a != b {
                let (y, x) = ((i / n) % n, i % n);
                assert!(
                    y > n * 2 / 5 && (n / 5..n * 4 / 5).contains(&x),
                    "pixel {x},{y}"
                );
            }
        }
        let off = desync.details["offset_frames"].as_i64().unwrap();
        assert!((3..=6).contains(&off.abs()), "{off}");
        let m = vm.details["manipulation"].as_str().unwrap();
        assert!(["blur", "recolour", "blend"].contains(&m), "{m}");
        assert_eq!(real.details, serde_json::json!({}));
        assert_eq!(swap.details["audio_source"], "independent");
    }
}

#[test]
fn every_manipulation_occurs() {
    let cfg = small();
    let g = ClipGenerator::new(&cfg).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..30 {
        let c = g.generate(ClipKind::VisualManipulation, seed);
        seen.insert(c.details["manipulation"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}
