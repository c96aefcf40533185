//! Parity of `LogMel` with librosa on fixtures written by
//! `scripts/fixtures/make_mel_fixtures.py` (librosa 0.10+).

use avfuse_media::mel::{LogMel, MelConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    config: MelConfig,
    input_i16: Vec<i32>,
    shape: [usize; 2],
    expected_db: Vec<f32>,
}

#[derive(Deserialize)]
struct Fixture {
    librosa: String,
    cases: Vec<Case>,
}

#[test]
fn log_mel_matches_librosa_within_1e_3_db() {
    let text = include_str!("fixtures/librosa_mel.json");
    let fx: Fixture = serde_json::from_str(text).unwrap();
    assert!(fx.cases.len() >= 8);
    let mut worst = (0.0f32, String::new());
    for case in &fx.cases {
        let lm = LogMel::new(&case.config).unwrap();
        let audio: Vec<f32> = case.input_i16.iter().map(|&k| k as f32 / 32768.0).collect();
        let got = lm.compute(&audio);
        let [n_mels, n_frames] = case.shape;
        assert_eq!(n_mels, case.config.n_mels, "{}", case.name);
        assert_eq!(n_frames, lm.n_frames(audio.len()), "{}", case.name);
        assert_eq!(got.len(), case.expected_db.len(), "{}", case.name);
        for (i, (g, e)) in got.iter().zip(&case.expected_db).enumerate() {
            let d = (g - e).abs();
            if d > worst.0 {
                worst = (
                    d,
                    format!(
                        "{} mel {} frame {}: {g} vs {e}",
                        case.name,
                        i / n_frames,
                        i % n_frames
                    ),
                );
            }
        }
    }
    eprintln!(
        "max |avfuse - librosa {}| = {:.2e} dB ({})",
        fx.librosa, worst.0, worst.1
    );
    assert!(worst.0 < 1e-3, "max error {} dB at {}", worst.0, worst.1);
}
