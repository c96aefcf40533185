//! Decoding tests on the committed fixtures (`tests/fixtures/media/`, made by
//! `scripts/fixtures/make_media_fixtures.sh`): 2 s, 25 fps, 128x72, a band whose grey
//! level encodes the frame number, a click at exactly 1.000 s (frame 25).
#![cfg(feature = "ffmpeg")]

use std::path::PathBuf;

use avfuse_media::decode::{self, FrameSize, ReadOptions, SeekPolicy};
use avfuse_media::sampling::Sampling;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/media")
        .join(name)
}

const WITH_AUDIO: [&str; 3] = ["h264_aac.mp4", "hevc_aac.mp4", "mpeg4_aac.mp4"];
const ALL_VIDEO: [&str; 4] = [
    "h264_aac.mp4",
    "hevc_aac.mp4",
    "mpeg4_aac.mp4",
    "noaudio.mp4",
];

/// Frame number spelt in binary by the bottom band of a decoded RGB frame (8 blocks of
/// `w / 8` pixels, least significant bit on the left).
fn frame_number(frame: &[u8], w: usize, h: usize) -> usize {
    let bw = w / 8;
    (0..8)
        .map(|b| {
            let (mut sum, mut n) = (0u64, 0u64);
            for y in h - 12..h - 4 {
                for x in b * bw + bw / 4..(b + 1) * bw - bw / 4 {
                    sum += u64::from(frame[(y * w + x) * 3 + 1]);
                    n += 1;
                }
            }
            usize::from(sum / n > 128) << b
        })
        .sum()
}

fn numbers(clip: &decode::DecodedClip) -> Vec<usize> {
    (0..clip.num_frames())
        .map(|t| frame_number(clip.frame(t), clip.width, clip.height))
        .collect()
}

#[test]
fn open_reports_streams() {
    let expect = [
        ("h264_aac.mp4", "h264", Some((44_100, 2))),
        ("hevc_aac.mp4", "hevc", Some((48_000, 1))),
        ("mpeg4_aac.mp4", "mpeg4", Some((16_000, 2))),
        ("noaudio.mp4", "h264", None),
    ];
    for (name, codec, audio) in expect {
        let info = decode::open(&fixture(name)).unwrap();
        assert_eq!(info.video_codec, codec, "{name}");
        assert_eq!((info.width, info.height), (128, 72), "{name}");
        assert!((info.fps - 25.0).abs() < 1e-9, "{name}: {}", info.fps);
        assert_eq!(info.num_frames, 50, "{name}");
        assert!((info.duration_s - 2.0).abs() < 0.05, "{name}");
        assert_eq!(info.has_audio, audio.is_some(), "{name}");
        assert_eq!(info.sample_rate.zip(info.channels), audio, "{name}");
        if audio.is_some() {
            assert_eq!(info.audio_codec.as_deref(), Some("aac"));
        }
    }
}

#[test]
fn every_sampling_mode_and_seek_policy_returns_the_right_frames() {
    let samplings = [
        Sampling::Uniform { count: 8 },
        Sampling::Uniform { count: 50 },
        Sampling::Random { count: 6, seed: 3 },
        Sampling::StartAt {
            start_s: 0.52,
            count: 6,
            stride: 3,
        },
        Sampling::StartAt {
            start_s: 1.84,
            count: 6,
            stride: 1,
        },
    ];
    for name in ALL_VIDEO {
        for sampling in &samplings {
            let want = sampling.frame_indices(50, 25.0).unwrap();
            for seek in [
                SeekPolicy::Auto,
                SeekPolicy::DecodeThrough,
                SeekPolicy::SeekEach,
            ] {
                let opts = ReadOptions {
                    sampling: sampling.clone(),
                    seek,
                    audio_rate: None,
                    ..ReadOptions::default()
                };
                let clip = decode::read_clip(&fixture(name), &opts).unwrap();
                assert_eq!(clip.frame_indices, want);
                assert_eq!(
                    numbers(&clip),
                    want,
                    "{name} {sampling:?} {seek:?} ({:?})",
                    clip.stats
                );
                if seek == SeekPolicy::DecodeThrough {
                    assert_eq!(clip.stats.seeks, 0);
                }
                for (t, &i) in clip.frame_times_s.iter().zip(&want) {
                    assert!((t - i as f64 / 25.0).abs() < 1e-9);
                }
            }
        }
    }
}

/// Skipping the non-reference frames no sampled frame needs returns bit-identical frames,
/// and decodes fewer of them on the B-frame fixtures.
#[test]
fn skipping_unneeded_non_reference_frames_changes_nothing_but_the_work() {
    let samplings = [
        Sampling::Uniform { count: 8 },
        Sampling::Uniform { count: 50 },
        Sampling::Random { count: 6, seed: 11 },
        Sampling::StartAt {
            start_s: 0.3,
            count: 5,
            stride: 4,
        },
    ];
    for name in ALL_VIDEO {
        let mut saved = 0;
        for sampling in &samplings {
            for seek in [SeekPolicy::Auto, SeekPolicy::DecodeThrough] {
                let run = |skip| {
                    let opts = ReadOptions {
                        sampling: sampling.clone(),
                        seek,
                        audio_rate: None,
                        skip_unneeded: skip,
                        ..ReadOptions::default()
                    };
                    decode::read_clip(&fixture(name), &opts).unwrap()
                };
                let (on, off) = (run(true), run(false));
                assert_eq!(on.frames, off.frames, "{name} {sampling:?} {seek:?}");
                assert_eq!(numbers(&on), sampling.frame_indices(50, 25.0).unwrap());
                assert!(on.stats.frames_decoded <= off.stats.frames_decoded);
                saved += off.stats.frames_decoded - on.stats.frames_decoded;
            }
        }
        // H.264 and HEVC fixtures have non-reference B-frames; MPEG-4 has none.
        if name.starts_with("h264") || name.starts_with("hevc") {
            assert!(saved > 0, "{name}: no frame skipped");
        }
    }
}

#[test]
fn seeking_saves_decoding_on_a_late_window() {
    let sampling = Sampling::StartAt {
        start_s: 1.6,
        count: 4,
        stride: 1,
    };
    let run = |seek| {
        let opts = ReadOptions {
            sampling: sampling.clone(),
            seek,
            audio_rate: None,
            ..ReadOptions::default()
        };
        decode::read_clip(&fixture("h264_aac.mp4"), &opts)
            .unwrap()
            .stats
    };
    let (auto, through) = (run(SeekPolicy::Auto), run(SeekPolicy::DecodeThrough));
    assert!(auto.seeks >= 1, "{auto:?}");
    assert!(
        auto.frames_decoded < through.frames_decoded,
        "{auto:?} vs {through:?}"
    );
}

/// Time (s, from the first frame) of the first sample louder than 0.1.
fn onset(clip: &decode::DecodedClip) -> f64 {
    let audio = clip.audio.as_ref().expect("audio");
    let i = audio
        .iter()
        .position(|v| v.abs() > 0.1)
        .expect("a click in the audio");
    clip.audio_start_s + i as f64 / f64::from(clip.audio_rate)
}

#[test]
fn audio_and_video_are_in_sync() {
    for name in WITH_AUDIO {
        // Whole clip.
        let opts = ReadOptions {
            sampling: Sampling::Uniform { count: 50 },
            ..ReadOptions::default()
        };
        let clip = decode::read_clip(&fixture(name), &opts).unwrap();
        let audio = clip.audio.as_ref().unwrap();
        assert_eq!(clip.audio_rate, 16_000);
        assert_eq!(audio.len(), 32_000, "{name}: 2 s at 16 kHz");
        let t = onset(&clip);
        // The click starts at frame 25 = 1.000 s: within one frame (40 ms), and in fact
        // within 2 ms once the AAC priming is removed.
        assert!((t - 1.0).abs() < 0.040, "{name}: click at {t:.4} s");
        assert!((t - 1.0).abs() < 0.002, "{name}: click at {t:.4} s");
        assert!(
            audio[..15_000].iter().all(|v| v.abs() < 0.02),
            "{name}: silence before"
        );
        // A window starting at 0.8 s (seeks on the video side, and on the audio side).
        let opts = ReadOptions {
            sampling: Sampling::StartAt {
                start_s: 0.8,
                count: 10,
                stride: 1,
            },
            ..ReadOptions::default()
        };
        let clip = decode::read_clip(&fixture(name), &opts).unwrap();
        assert_eq!(clip.audio.as_ref().unwrap().len(), 6400, "{name}: 0.4 s");
        assert!((clip.audio_start_s - 0.8).abs() < 1e-9);
        let t = onset(&clip);
        assert!((t - 1.0).abs() < 0.002, "{name}: click at {t:.4} s");
        // Fixed audio length, past the end of the stream: zero-padded.
        let opts = ReadOptions {
            sampling: Sampling::StartAt {
                start_s: 1.5,
                count: 2,
                stride: 1,
            },
            audio_seconds: Some(1.0),
            ..ReadOptions::default()
        };
        let clip = decode::read_clip(&fixture(name), &opts).unwrap();
        let a = clip.audio.unwrap();
        assert_eq!(a.len(), 16_000);
        assert!(
            a[9_000..].iter().all(|&v| v == 0.0),
            "{name}: zero after the end"
        );
    }
}

#[test]
fn no_audio_track_gives_none() {
    let clip = decode::read_clip(&fixture("noaudio.mp4"), &ReadOptions::default()).unwrap();
    assert!(clip.audio.is_none());
    assert!(!clip.info.has_audio);
    assert_eq!(clip.num_frames(), 32);
}

#[test]
fn frame_sizes() {
    let cases = [
        (FrameSize::Native, (128, 72)),
        (FrameSize::Fit { max_side: 64 }, (64, 36)),
        (FrameSize::Fit { max_side: 1000 }, (128, 72)),
        (FrameSize::Square(48), (48, 48)),
        (
            FrameSize::Exact {
                width: 40,
                height: 20,
            },
            (40, 20),
        ),
    ];
    for (size, (w, h)) in cases {
        let opts = ReadOptions {
            frame_size: size,
            sampling: Sampling::Uniform { count: 3 },
            audio_rate: None,
            ..ReadOptions::default()
        };
        let clip = decode::read_clip(&fixture("h264_aac.mp4"), &opts).unwrap();
        assert_eq!((clip.width, clip.height), (w, h), "{size:?}");
        assert_eq!(clip.frames.len(), 3 * w * h * 3);
    }
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    for name in ["truncated.mp4", "not_video.mp4", "does_not_exist.mp4"] {
        let path = fixture(name);
        let e = decode::read_clip(&path, &ReadOptions::default()).unwrap_err();
        assert!(e.to_string().contains(name), "{e}");
        let e = decode::open(&path).unwrap_err();
        assert!(e.to_string().contains(name), "{e}");
    }
    // A window past the end is an error naming the file, not a panic.
    let opts = ReadOptions {
        sampling: Sampling::StartAt {
            start_s: 5.0,
            count: 2,
            stride: 1,
        },
        ..ReadOptions::default()
    };
    let e = decode::read_clip(&fixture("h264_aac.mp4"), &opts).unwrap_err();
    assert!(e.to_string().contains("h264_aac.mp4"), "{e}");
}

#[test]
fn resampler_keeps_time_alignment() {
    // An impulse at 0.5 s at 44.1 kHz lands at 0.5 s at 16 kHz.
    let mut x = vec![0.0f32; 44_100];
    x[22_050] = 1.0;
    let y = decode::resample(&x, 44_100, 16_000).unwrap();
    assert_eq!(y.len(), 16_000);
    let peak = y
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .unwrap()
        .0;
    assert!((peak as i64 - 8000).abs() <= 1, "peak at {peak}");
    // A 1 kHz tone keeps its level (passband flat).
    let x: Vec<f32> = (0..48_000)
        .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin())
        .collect();
    let y = decode::resample(&x, 48_000, 16_000).unwrap();
    let rms = (y[2000..14_000].iter().map(|v| v * v).sum::<f32>() / 12_000.0).sqrt();
    assert!(
        (rms - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.01,
        "{rms}"
    );
}
