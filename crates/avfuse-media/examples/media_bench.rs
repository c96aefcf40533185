//! The media pipeline's speed on real clips, for `bench/media/run.sh` (which compares it
//! with the Python reference `bench/media/reference.py`).
//!
//! ```text
//! cargo run --release -p avfuse-media --features ffmpeg --example media_bench -- \
//!     OUT.json CLIP.mp4 [CLIP.mp4 ...]
//! ```
//!
//! Per clip, 32 uniformly sampled frames, face crops 224x224 (detection on a grey copy
//! downscaled to 320 px, every 4th frame with interpolation; and, for a like-for-like
//! detector comparison, on every frame), 16 kHz mono audio and its log-mel (64 mels,
//! n_fft 512, hop 160). Stages are timed separately, median of `REPS` runs, on the calling
//! thread (decoder threads from `AVFUSE_DECODE_THREADS`, default 1). Then the whole
//! pipeline over all clips in parallel with rayon (all cores). Also the three seek
//! policies on three sampling modes. Writes JSON.

use std::path::{Path, PathBuf};
use std::time::Instant;

use avfuse_media::decode::{self, ReadOptions, SeekPolicy};
use avfuse_media::faces::{self, BoxSource, Cascade, FaceConfig};
use avfuse_media::mel::{LogMel, MelConfig};
use avfuse_media::sampling::Sampling;
use rayon::prelude::*;
use serde_json::json;

const REPS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

struct Run {
    decode_ms: f64,
    faces_ms: f64,
    faces_every1_ms: f64,
    mel_ms: f64,
    boxes: Vec<serde_json::Value>,
    stats: serde_json::Value,
}

fn run_clip(
    path: &Path,
    threads: usize,
    logmel: &LogMel,
    every_frame_too: bool,
) -> Result<Run, Box<dyn std::error::Error>> {
    let opts = ReadOptions {
        sampling: Sampling::Uniform { count: 32 },
        threads,
        ..ReadOptions::default()
    };
    let t0 = Instant::now();
    let clip = decode::read_clip(path, &opts)?;
    let decode_ms = ms(t0);
    let cfg = FaceConfig::default();
    let cascade = Cascade::frontal_face();
    let n = clip.num_frames();
    let t1 = Instant::now();
    let track = faces::track_faces(cascade, &clip.frames, n, clip.width, clip.height, &cfg)?;
    let crops = faces::crop_faces(&clip.frames, n, clip.width, clip.height, &track, &cfg)?;
    let faces_ms = ms(t1);
    assert_eq!(crops.len(), n * 224 * 224 * 3);
    let every1 = FaceConfig {
        every: 1,
        ..cfg.clone()
    };
    let t2 = Instant::now();
    let track1 = if every_frame_too {
        let tr = faces::track_faces(cascade, &clip.frames, n, clip.width, clip.height, &every1)?;
        let _ = faces::crop_faces(&clip.frames, n, clip.width, clip.height, &tr, &every1)?;
        tr
    } else {
        track.clone()
    };
    let faces_every1_ms = ms(t2);
    let t3 = Instant::now();
    let audio = clip.audio.clone().unwrap_or_default();
    let mel = logmel.compute(&audio);
    let mel_ms = ms(t3);
    assert!(!mel.is_empty());
    let boxes = track1
        .boxes
        .iter()
        .zip(&track1.sources)
        .zip(&clip.frame_indices)
        .filter(|((_, s), _)| **s == BoxSource::Detected)
        .filter_map(|((b, _), &i)| b.map(|b| json!({"frame": i, "box": [b.x, b.y, b.w, b.h]})))
        .collect();
    Ok(Run {
        decode_ms,
        faces_ms,
        faces_every1_ms,
        mel_ms,
        boxes,
        stats: json!({"decode": clip.stats, "faces": track.stats, "width": clip.width,
                      "height": clip.height, "audio_samples": audio.len()}),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: media_bench OUT.json CLIP.mp4 [CLIP.mp4 ...]");
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[0]);
    let clips: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
    let threads: usize = std::env::var("AVFUSE_DECODE_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let logmel = LogMel::new(&MelConfig::default())?;
    let mut per_clip = Vec::new();
    for c in &clips {
        let _warm = run_clip(c, threads, &logmel, true)?;
        let runs: Vec<Run> = (0..REPS)
            .map(|_| run_clip(c, threads, &logmel, true))
            .collect::<Result<_, _>>()?;
        let pick = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        let (d, f, f1, m) = (
            pick(|r| r.decode_ms),
            pick(|r| r.faces_ms),
            pick(|r| r.faces_every1_ms),
            pick(|r| r.mel_ms),
        );
        eprintln!(
            "{}: decode {d:.1} ms, faces {f:.1} ms (every frame {f1:.1}), mel {m:.1} ms",
            c.display()
        );
        // Seek policies x sampling modes (decode only, video only).
        let mut seek = Vec::new();
        for (name, sampling) in [
            ("uniform32", Sampling::Uniform { count: 32 }),
            ("random32", Sampling::Random { count: 32, seed: 1 }),
            (
                "start_at_2s_32",
                Sampling::StartAt {
                    start_s: 2.0,
                    count: 32,
                    stride: 1,
                },
            ),
            (
                "start_at_2s_8_stride8",
                Sampling::StartAt {
                    start_s: 2.0,
                    count: 8,
                    stride: 8,
                },
            ),
        ] {
            for policy in [
                SeekPolicy::DecodeThrough,
                SeekPolicy::Auto,
                SeekPolicy::SeekEach,
            ] {
                let opts = ReadOptions {
                    sampling: sampling.clone(),
                    seek: policy,
                    audio_rate: None,
                    threads,
                    ..ReadOptions::default()
                };
                let mut times = Vec::new();
                let mut stats = None;
                for _ in 0..3 {
                    let t = Instant::now();
                    let r = decode::read_clip(c, &opts)?;
                    times.push(ms(t));
                    stats = Some(r.stats);
                }
                seek.push(
                    json!({"sampling": name, "policy": policy, "ms": median(times),
                                 "stats": stats}),
                );
            }
        }
        let last = runs.into_iter().next_back().ok_or("no runs")?;
        per_clip.push(json!({
            "clip": c.file_name().map(|n| n.to_string_lossy().to_string()),
            "decode_ms": d, "faces_ms": f, "faces_every_frame_ms": f1, "mel_ms": m,
            "total_ms": d + f + m,
            "boxes": last.boxes, "stats": last.stats, "seek_policies": seek,
        }));
    }
    // All cores: every clip REPS times, in parallel.
    let tasks: Vec<&PathBuf> = clips.iter().cycle().take(clips.len() * REPS).collect();
    let t = Instant::now();
    tasks
        .par_iter()
        .map(|c| {
            run_clip(c, threads, &logmel, false)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<()>, String>>()?;
    let parallel_ms = ms(t);
    let doc = json!({
        "reps": REPS,
        "decoder_threads": threads,
        "rayon_threads": rayon::current_num_threads(),
        "clips": per_clip,
        "parallel": {"tasks": tasks.len(), "wall_ms": parallel_ms,
                     "ms_per_clip": parallel_ms / tasks.len() as f64},
    });
    std::fs::write(&out, serde_json::to_vec_pretty(&doc)?)?;
    Ok(())
}
