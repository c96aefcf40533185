//! `avfuse prepare` and `avfuse check-shortcuts`: real videos to the training cache, and the
//! leading-silence shortcut report. Both need the `ffmpeg` feature (FFmpeg's libraries);
//! without it they explain how to get it.

#[cfg(not(feature = "ffmpeg"))]
use anyhow::Result;

#[cfg(not(feature = "ffmpeg"))]
use crate::cli::{CheckShortcutsArgs, PrepareArgs};

#[cfg(not(feature = "ffmpeg"))]
const NO_FFMPEG: &str = "this avfuse was built without FFmpeg: rebuild with `cargo build --release \
     --features ffmpeg` (needs FFmpeg's development packages; on Debian/Ubuntu: apt-get install \
     libavformat-dev libavcodec-dev libswscale-dev libswresample-dev pkg-config clang)";

/// `avfuse prepare`.
#[cfg(not(feature = "ffmpeg"))]
pub fn prepare(_a: PrepareArgs) -> Result<()> {
    anyhow::bail!(NO_FFMPEG)
}

/// `avfuse check-shortcuts`.
#[cfg(not(feature = "ffmpeg"))]
pub fn check_shortcuts(_a: CheckShortcutsArgs) -> Result<()> {
    anyhow::bail!(NO_FFMPEG)
}

#[cfg(feature = "ffmpeg")]
pub use with_ffmpeg::{check_shortcuts, prepare};

#[cfg(feature = "ffmpeg")]
mod with_ffmpeg {
    use std::sync::atomic::{AtomicU64, Ordering};

    use anyhow::{Context, Result, bail};
    use avfuse_media::dataset;
    use avfuse_media::prepare::{PrepareOptions, merge_parts};
    use avfuse_media::sampling::Sampling;
    use avfuse_media::silence::silence_report;
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    use tracing::{info, warn};

    use crate::cli::{CheckShortcutsArgs, PrepareArgs, SamplingArg};

    /// Parse `i/N` (0-based part `i` of `N`).
    fn parse_shard(s: &str) -> Result<(usize, usize)> {
        let (i, n) = s
            .split_once('/')
            .with_context(|| format!("--shard {s}: expected i/N, e.g. 0/4"))?;
        let i: usize = i
            .trim()
            .parse()
            .with_context(|| format!("--shard {s}: part index {i:?} is not a number"))?;
        let n: usize = n
            .trim()
            .parse()
            .with_context(|| format!("--shard {s}: part count {n:?} is not a number"))?;
        if n == 0 || i >= n {
            bail!("--shard {s}: need 0 <= i < N");
        }
        Ok((i, n))
    }

    pub fn prepare(a: PrepareArgs) -> Result<()> {
        crate::commands::init_logging_level("info");
        if let Some(n) = a.merge {
            let indexes = merge_parts(&a.out, n)
                .with_context(|| format!("merging {n} parts in {}", a.out.display()))?;
            for idx in &indexes {
                info!(split = %idx.split, clips = idx.num_clips, "merged");
            }
            println!("merged {n} parts into {}", a.out.display());
            return Ok(());
        }
        let Some(data_root) = a.data_root.clone() else {
            bail!("--data-root is required (except with --merge)");
        };
        let count = a.frames;
        let sampling = match a.sampling {
            SamplingArg::Start => Sampling::StartAt {
                start_s: a.start,
                count,
                stride: a.stride,
            },
            SamplingArg::Uniform => Sampling::Uniform { count },
            SamplingArg::Random => Sampling::Random {
                count,
                seed: a.seed,
            },
        };
        let mut opts = PrepareOptions {
            data_root: data_root.clone(),
            out: a.out.clone(),
            shard: a.shard.as_deref().map(parse_shard).transpose()?,
            splits: a.splits.clone(),
            frames_per_clip: count,
            sampling,
            fps: a.fps,
            crop_size: a.crop_size,
            max_side: a.max_side,
            shard_size: a.shard_size,
            trim_leading_silence: a.trim_leading_silence,
            keep_work: a.keep_work,
            retry_failed: a.retry_failed,
            ..PrepareOptions::default()
        };
        opts.faces.crop_size = a.crop_size;
        opts.faces.every = a.detect_every;

        let pb = ProgressBar::with_draw_target(
            None,
            if a.no_progress {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(
            "prepare [{bar:30}] {pos}/{len} clips ({per_sec}, eta {eta})",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        let total = AtomicU64::new(0);
        let report = avfuse_media::prepare::prepare(&opts, &|done, all| {
            if total.swap(all as u64, Ordering::Relaxed) != all as u64 {
                pb.set_length(all as u64);
            }
            pb.set_position(done as u64);
        })
        .with_context(|| format!("preparing {}", data_root.display()))?;
        pb.finish_and_clear();

        for s in &report.splits {
            info!(
                split = %s.split,
                clips = s.clips,
                processed = s.processed,
                reused = s.reused,
                written = s.written,
                failed = s.failed.len(),
                without_face = s.clips_without_face,
                centre_crop_frames = s.fallback_frames,
                without_audio = s.clips_without_audio,
                complete = s.complete,
                "{}",
                s.dir.display()
            );
        }
        for f in report.failed() {
            warn!(split = %f.split, clip = %f.clip_id, file = %f.file.display(), "skipped: {}", f.error);
        }
        let report_path = a.out.join(match opts.shard {
            Some((i, n)) => format!("prepare-report-{i}-of-{n}.json"),
            None => "prepare-report.json".into(),
        });
        let json = serde_json::to_vec_pretty(&report)?;
        avfuse_media::io::atomic_write(&report_path, &json)
            .with_context(|| format!("writing {}", report_path.display()))?;
        let failed = report.failed().count();
        println!(
            "{} clips written, {failed} skipped (see {}){}",
            report.splits.iter().map(|s| s.written).sum::<usize>(),
            report_path.display(),
            if report.interrupted {
                "; interrupted: rerun the same command to continue"
            } else {
                ""
            }
        );
        if let Some((_, n)) = opts.shard {
            println!(
                "when all {n} parts are done: avfuse prepare --out {} --merge {n}",
                a.out.display()
            );
        }
        Ok(())
    }

    pub fn check_shortcuts(a: CheckShortcutsArgs) -> Result<()> {
        crate::commands::init_logging_level("info");
        let clips = dataset::scan(&a.data_root)
            .with_context(|| format!("reading the dataset at {}", a.data_root.display()))?;
        if clips.is_empty() {
            bail!("{}: no clips found", a.data_root.display());
        }
        let report = silence_report(&clips, a.threshold_db)?;
        let json = serde_json::to_string_pretty(&report)?;
        if let Some(out) = &a.out {
            avfuse_media::io::atomic_write(out, json.as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
        }
        println!("{json}");
        if let Some(gap) = report.mean_gap_s
            && gap.abs() >= a.warn_gap_s
        {
            println!(
                "WARNING: fakes and reals differ by {gap:+.3} s of leading silence on average: \
                 a model can learn the label from it. Trim it with \
                 `avfuse prepare --trim-leading-silence {}`.",
                a.threshold_db
            );
        }
        Ok(())
    }
}
