//! A multi-class checkpoint (`dataset.classes`) is served: each window gets its class
//! probabilities (a softmax that sums to 1), the fake probability is 1 minus the real
//! class's, and the label is the real class below the threshold, else the most probable
//! fake class. Needs no FFmpeg: the windows are built directly.

use std::path::Path;

use avfuse_serve::engine::{ClipWindow, EngineOptions, Inference};
use avfuse_serve::testing::RandomCheckpoint;

const T: usize = 4;
const S: usize = 32;

fn window(k: usize) -> ClipWindow {
    ClipWindow {
        start_s: k as f64,
        end_s: k as f64 + 0.16,
        frames: (0..T * 3 * S * S)
            .map(|i| ((i * (7 + k)) % 251) as u8)
            .collect(),
        mel: (0..64 * (1 + 4 * T))
            .map(|i| -60.0 + ((i * (3 + k)) % 50) as f32)
            .collect(),
        faces_found: 0,
    }
}

#[test]
fn a_multiclass_checkpoint_reports_class_probabilities() {
    let classes = ["real", "desync", "visual_manipulation", "audio_swap"].map(String::from);
    let ckpt = RandomCheckpoint {
        classes: Some(classes.to_vec()),
        ..RandomCheckpoint::tiny(T, S)
    }
    .build()
    .unwrap();
    assert_eq!(ckpt.meta.labels, classes);
    let engine =
        Inference::from_checkpoint(&ckpt, Path::new("mc.avfc"), &EngineOptions::default()).unwrap();
    let windows = [window(0), window(1), window(2)];
    let scores = engine.score(&windows, true, Path::new("x.mp4")).unwrap();
    assert_eq!(scores.main.len(), 3);
    assert_eq!(scores.main_classes.len(), 3);
    for (p, probs) in scores.main.iter().zip(&scores.main_classes) {
        assert_eq!(probs.len(), 4);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{probs:?}");
        assert!((p - (1.0 - probs[0])).abs() < 1e-12);
    }
    // Single-modality rows are fake probabilities too.
    assert_eq!(scores.video.as_ref().map(Vec::len), Some(3));
    assert_eq!(scores.audio.as_ref().map(Vec::len), Some(3));

    // Labels: the real class below the threshold (0.5 by default), else the arg-max fake class.
    let probs = [0.2, 0.1, 0.6, 0.1];
    assert_eq!(engine.label_for(0.8, &probs), "visual_manipulation");
    assert_eq!(engine.label_for(0.3, &probs), "real");

    // A binary checkpoint is unchanged: one probability per window, no classes.
    let binary = RandomCheckpoint::tiny(T, S).build().unwrap();
    let engine =
        Inference::from_checkpoint(&binary, Path::new("b.avfc"), &EngineOptions::default())
            .unwrap();
    let scores = engine.score(&windows, true, Path::new("x.mp4")).unwrap();
    assert_eq!(scores.main.len(), 3);
    assert!(scores.main_classes.is_empty());
    assert_eq!(engine.label_for(0.8, &[]), "fake");
}
