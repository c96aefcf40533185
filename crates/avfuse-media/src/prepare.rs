//! Pre-extraction of real media into the shard cache (feature `ffmpeg`): the library side
//! of `avfuse prepare`.
//!
//! [`prepare`] reads a dataset ([`crate::dataset`]: a `data_root/<split>/<clip_id>/`
//! tree or a manifest), and for every clip, in parallel (rayon): decodes
//! `frames_per_clip` frames and the matching 16 kHz audio ([`crate::decode`]), tracks the
//! face and crops it ([`crate::faces`]), computes the log-mel ([`crate::mel`]), and finally
//! writes one cache split per dataset split ([`crate::cache`]: safetensors shards,
//! `manifest.jsonl`, `index.json` last).
//!
//! **Output.** `out/<split>/`, or with `shard: Some((i, n))` `out/part-<i>-of-<n>/<split>/`
//! (each a complete cache split; [`merge_parts`] joins the `n` parts into `out/<split>/`,
//! byte-identical to an unsharded run). Clips are stored in `clip_id` order. Per clip:
//! `frames` u8 `[T, 3, crop, crop]` (RGB face crops), `mel` f32 dB
//! `[n_mels, 1 + audio_samples / hop]` where `audio_samples = round(T * stride / fps *
//! 16000)` from the first sampled frame (zero-padded past the end of the audio; all
//! -100 dB-floor silence and `audio_present = 0` when the file has no audio track).
//!
//! **Resumability.** Each finished clip is written atomically to
//! `<split>/.work/<key>.clip.safetensors` (a failed one to `<key>.failed.json`) before it
//! counts as done; a rerun with the same options skips finished clips, and the split's
//! shards, manifest and index are assembled from those files only once every clip is
//! accounted for. A crash at any point therefore loses at most the clips in flight, and
//! the final output is byte-identical to an uninterrupted run. `.work/options.json` pins
//! the options: resuming with different ones is an error. After a split is complete its
//! `.work` is removed (unless `keep_work`), and `prepare.json` records what it was made
//! with, so a rerun of a complete split does nothing.
//!
//! **Failures.** An unreadable or corrupt clip is logged (`tracing::warn!`), recorded in
//! the report and skipped; it never stops the run. It is retried on a rerun only with
//! `retry_failed`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::cache::{
    self, CacheIndex, CacheLayout, ClipMeta, ClipTensors, INDEX_FILE, ManifestEntry, ShardWriter,
};
use crate::dataset::{self, ClipSource};
use crate::decode::{self, FrameSize, ReadOptions, SeekPolicy};
use crate::error::MediaError;
use crate::faces::{self, Cascade, FaceConfig, FaceStats};
use crate::image_ops::hwc_to_chw;
use crate::io::atomic_write;
use crate::mel::{LogMel, MelConfig};
use crate::sampling::Sampling;
use crate::silence::leading_silence;

/// Options of [`prepare`]. The fields that shape the output are pinned in
/// `.work/options.json` and `prepare.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrepareOptions {
    /// A dataset directory tree or a manifest file (see [`crate::dataset`]).
    pub data_root: PathBuf,
    /// Output directory (one sub-directory per split).
    pub out: PathBuf,
    /// `Some((i, n))`: process only part `i` of `n` (0-based; round-robin per split).
    pub shard: Option<(usize, usize)>,
    /// Only these splits (default: all).
    pub splits: Option<Vec<String>>,
    /// Frames per clip, `T` (default 32).
    pub frames_per_clip: usize,
    /// How frames are chosen; its count is replaced by `frames_per_clip`, and a
    /// `Random` seed is mixed with the clip id so every clip gets its own draw
    /// (default: consecutive frames from the start).
    pub sampling: Sampling,
    /// Nominal frame rate in frames per second, stored in the index and used to size the
    /// audio: `T * stride / fps` seconds (default 25).
    pub fps: f32,
    /// Face crop side in pixels (default 224).
    pub crop_size: usize,
    /// Face detection and crop settings (`crop_size` above wins).
    pub faces: FaceConfig,
    /// Log-mel settings (sample rate 16 kHz by default).
    pub mel: MelConfig,
    /// Decode frames scaled so that the longer side is at most this (default: native).
    pub max_side: Option<u32>,
    /// Clips per shard file (default 32).
    pub shard_size: usize,
    /// `Some(threshold_db)`: start every clip after its leading silence (see
    /// [`crate::silence::leading_silence`]), shifting video and audio alike.
    pub trim_leading_silence: Option<f32>,
    /// Stop after this many clips are newly processed in this run, leaving the work
    /// unfinished (for tests and for time-boxed jobs; a rerun continues).
    pub stop_after: Option<usize>,
    /// Keep `.work/` after a split is complete.
    pub keep_work: bool,
    /// Retry clips that failed in an earlier run.
    pub retry_failed: bool,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            data_root: PathBuf::new(),
            out: PathBuf::new(),
            shard: None,
            splits: None,
            frames_per_clip: 32,
            sampling: Sampling::default(),
            fps: 25.0,
            crop_size: 224,
            faces: FaceConfig::default(),
            mel: MelConfig::default(),
            max_side: None,
            shard_size: 32,
            trim_leading_silence: None,
            stop_after: None,
            keep_work: false,
            retry_failed: false,
        }
    }
}

/// The output-shaping subset of the options, pinned on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Pinned {
    frames_per_clip: usize,
    sampling: Sampling,
    fps: f32,
    crop_size: usize,
    faces: FaceConfig,
    mel: MelConfig,
    max_side: Option<u32>,
    shard_size: usize,
    trim_leading_silence: Option<f32>,
}

/// Per-clip processing: decode, faces, crops, log-mel. Built once, shared by threads.
#[derive(Debug)]
pub struct ClipPipeline {
    read: ReadOptions,
    faces: FaceConfig,
    logmel: LogMel,
    audio_samples: usize,
    trim: Option<f32>,
}

/// One processed clip.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedClip {
    /// Face crops, u8 `[T, crop, crop, 3]` (interleaved RGB).
    pub crops: Vec<u8>,
    /// Log-mel, f32 dB `[n_mels, mel_frames]`.
    pub mel: Vec<f32>,
    /// The mono audio the mel was computed from (`audio_samples` samples, zeros where the
    /// file has none).
    pub audio: Vec<f32>,
    /// Whether the file has audio.
    pub audio_present: bool,
    /// The decoded clip's properties and frame choice.
    pub info: decode::MediaInfo,
    /// Frame indices taken.
    pub frame_indices: Vec<usize>,
    /// Face processing counters.
    pub face_stats: FaceStats,
    /// Decoder counters.
    pub decode_stats: decode::DecodeStats,
    /// Leading silence skipped, seconds (0 without trimming).
    pub trimmed_s: f64,
}

impl ClipPipeline {
    /// Validates the options and builds the shared state (mel filterbank, FFT plan).
    pub fn new(opts: &PrepareOptions) -> Result<Self, MediaError> {
        if opts.frames_per_clip == 0 {
            return Err(MediaError::Invalid("frames_per_clip must be > 0".into()));
        }
        if !(opts.fps.is_finite() && opts.fps > 0.0) {
            return Err(MediaError::Invalid(format!(
                "fps must be finite and > 0, got {}",
                opts.fps
            )));
        }
        let sampling = opts.sampling.with_count(opts.frames_per_clip);
        sampling.validate()?;
        let mut faces = opts.faces.clone();
        faces.crop_size = opts.crop_size;
        faces.validate()?;
        let logmel = LogMel::new(&opts.mel)?;
        let stride = match sampling {
            Sampling::StartAt { stride, .. } => stride,
            _ => 1,
        };
        let audio_s = opts.frames_per_clip as f64 * stride as f64 / f64::from(opts.fps);
        let rate = opts.mel.sample_rate;
        let audio_samples = (audio_s * f64::from(rate)).round() as usize;
        let read = ReadOptions {
            frame_size: match opts.max_side {
                Some(m) => FrameSize::Fit { max_side: m },
                None => FrameSize::Native,
            },
            sampling,
            audio_rate: Some(rate),
            audio_seconds: Some(audio_samples as f64 / f64::from(rate)),
            seek: SeekPolicy::Auto,
            threads: 1,
            skip_s: 0.0,
            skip_unneeded: true,
        };
        if let Some(t) = opts.trim_leading_silence {
            leading_silence(&[], rate, t)?;
        }
        Ok(Self {
            read,
            faces,
            logmel,
            audio_samples,
            trim: opts.trim_leading_silence,
        })
    }

    /// Audio samples per clip.
    pub fn audio_samples(&self) -> usize {
        self.audio_samples
    }

    /// Mel frames per clip.
    pub fn mel_frames(&self) -> usize {
        self.logmel.n_frames(self.audio_samples)
    }

    /// Decode options used (before per-clip seeds and trimming).
    pub fn read_options(&self) -> &ReadOptions {
        &self.read
    }

    /// Processes one video file. `seed_salt` is mixed into a `Random` sampling seed.
    pub fn process(&self, path: &Path, seed_salt: u64) -> Result<ProcessedClip, MediaError> {
        let mut read = self.read.clone();
        if let Sampling::Random { seed, .. } = &mut read.sampling {
            *seed ^= seed_salt;
        }
        let mut trimmed_s = 0.0;
        if let Some(th) = self.trim {
            let rate = self.logmel.config().sample_rate;
            if let Some(a) = decode::read_audio_track(path, rate)? {
                trimmed_s = leading_silence(&a, rate, th)?;
                read.skip_s = trimmed_s;
            }
        }
        let clip = decode::read_clip(path, &read)?;
        let t = clip.num_frames();
        let track = faces::track_faces(
            Cascade::frontal_face(),
            &clip.frames,
            t,
            clip.width,
            clip.height,
            &self.faces,
        )?;
        let crops = faces::crop_faces(
            &clip.frames,
            t,
            clip.width,
            clip.height,
            &track,
            &self.faces,
        )?;
        let audio_present = clip.audio.is_some();
        let mut audio = clip.audio.unwrap_or_default();
        audio.resize(self.audio_samples, 0.0);
        let mel = self.logmel.compute(&audio);
        Ok(ProcessedClip {
            crops,
            mel,
            audio,
            audio_present,
            info: clip.info,
            frame_indices: clip.frame_indices,
            face_stats: track.stats,
            decode_stats: clip.stats,
            trimmed_s,
        })
    }
}

/// A clip that could not be processed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailedClip {
    /// Split.
    pub split: String,
    /// Clip id.
    pub clip_id: String,
    /// The video file.
    pub file: PathBuf,
    /// The error.
    pub error: String,
}

/// What happened to one split.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    /// Split name.
    pub split: String,
    /// Output directory of the split.
    pub dir: PathBuf,
    /// Clips of the split (in this part).
    pub clips: usize,
    /// Clips processed in this run.
    pub processed: usize,
    /// Clips found already done from an earlier run.
    pub reused: usize,
    /// Clips written to the cache (0 until complete).
    pub written: usize,
    /// Clips that failed (now or earlier).
    pub failed: Vec<FailedClip>,
    /// Clips (processed now) where no face was found: centre crops.
    pub clips_without_face: usize,
    /// Frames (processed now) cropped at the centre.
    pub fallback_frames: usize,
    /// Clips (processed now) without an audio track.
    pub clips_without_audio: usize,
    /// Whether the split's cache is complete (`index.json` written).
    pub complete: bool,
}

/// The result of [`prepare`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrepareReport {
    /// One entry per split, by name.
    pub splits: Vec<SplitReport>,
    /// Whether `stop_after` cut the run short.
    pub interrupted: bool,
}

impl PrepareReport {
    /// All failed clips.
    pub fn failed(&self) -> impl Iterator<Item = &FailedClip> {
        self.splits.iter().flat_map(|s| s.failed.iter())
    }
}

const WORK_DIR: &str = ".work";
const OPTIONS_FILE: &str = "options.json";
/// Written in a complete split: the pinned options and the clip ids.
pub const PREPARE_FILE: &str = "prepare.json";

#[derive(Serialize, Deserialize, PartialEq)]
struct Stamp {
    options: Pinned,
    clip_ids: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct WorkMeta {
    clip_id: String,
    label: u8,
    audio_present: bool,
    kind: String,
    details: serde_json::Value,
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// File-name-safe key of a clip id.
fn clip_key(clip_id: &str) -> String {
    let safe: String = clip_id
        .chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{:016x}", fnv1a(clip_id))
}

fn done_path(work: &Path, id: &str) -> PathBuf {
    work.join(format!("{}.clip.safetensors", clip_key(id)))
}

fn failed_path(work: &Path, id: &str) -> PathBuf {
    work.join(format!("{}.failed.json", clip_key(id)))
}

fn write_done(
    path: &Path,
    clip: &ClipSource,
    p: &ProcessedClip,
    t: usize,
    s: usize,
    n_mels: usize,
    mel_frames: usize,
) -> Result<(), MediaError> {
    let chw = hwc_to_chw(&p.crops, t, s, s, 3);
    let mel_bytes: Vec<u8> = p.mel.iter().flat_map(|v| v.to_le_bytes()).collect();
    let details = serde_json::json!({
        "source": clip.video.display().to_string(),
        "group": clip.group,
        "meta": clip.details,
        "video_codec": p.info.video_codec,
        "width": p.info.width,
        "height": p.info.height,
        "fps": p.info.fps,
        "duration_s": p.info.duration_s,
        "frame_indices": p.frame_indices,
        "faces": p.face_stats,
        "leading_silence_trimmed_s": p.trimmed_s,
    });
    let meta = WorkMeta {
        clip_id: clip.clip_id.clone(),
        label: clip.label,
        audio_present: p.audio_present,
        kind: clip.kind.clone(),
        details,
    };
    let meta_json = serde_json::to_string(&meta)
        .map_err(|e| MediaError::format(path, format!("cannot serialise clip metadata: {e}")))?;
    let ser = |e: safetensors::SafeTensorError| MediaError::format(path, format!("{e}"));
    let frames = TensorView::new(Dtype::U8, vec![t, 3, s, s], &chw).map_err(ser)?;
    let mel = TensorView::new(Dtype::F32, vec![n_mels, mel_frames], &mel_bytes).map_err(ser)?;
    let audio_bytes: Vec<u8> = p.audio.iter().flat_map(|v| v.to_le_bytes()).collect();
    let audio = TensorView::new(Dtype::F32, vec![p.audio.len()], &audio_bytes).map_err(ser)?;
    let bytes = safetensors::serialize(
        [("frames", frames), ("mel", mel), ("audio", audio)],
        Some(std::collections::HashMap::from([(
            "clip".to_string(),
            meta_json,
        )])),
    )
    .map_err(ser)?;
    atomic_write(path, &bytes)
}

struct DoneClip {
    meta: WorkMeta,
    frames: Vec<u8>,
    mel: Vec<f32>,
    audio: Vec<f32>,
}

fn read_done(path: &Path, layout: &CacheLayout) -> Result<DoneClip, MediaError> {
    let bytes = fs::read(path).map_err(|e| MediaError::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| MediaError::format(path, format!("corrupt work file: {e}")))?;
    let get = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Vec<u8>, MediaError> {
        let t = st
            .tensor(name)
            .map_err(|e| MediaError::format(path, format!("tensor `{name}`: {e}")))?;
        if t.dtype() != dtype || t.shape() != shape {
            return Err(MediaError::format(
                path,
                format!(
                    "tensor `{name}` is {:?} {:?}, expected {dtype:?} {shape:?}",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        Ok(t.data().to_vec())
    };
    let s = layout.image_size;
    let frames = get("frames", Dtype::U8, &[layout.frames, 3, s, s])?;
    let mel = get("mel", Dtype::F32, &[layout.n_mels, layout.mel_frames])?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| MediaError::format(path, format!("invalid header: {e}")))?;
    let meta_json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("clip"))
        .ok_or_else(|| MediaError::format(path, "no clip metadata"))?;
    let meta: WorkMeta = serde_json::from_str(meta_json)
        .map_err(|e| MediaError::format(path, format!("clip metadata: {e}")))?;
    // A work file left by an interrupted run of a version that cached no waveform has no
    // `audio` tensor: the error names the file (remove the split's work directory to redo).
    let audio = get("audio", Dtype::F32, &[layout.audio_samples])?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(DoneClip {
        meta,
        frames,
        mel,
        audio,
    })
}

fn split_dir(opts: &PrepareOptions, split: &str) -> PathBuf {
    match opts.shard {
        Some((i, n)) => opts.out.join(part_dir_name(i, n)).join(split),
        None => opts.out.join(split),
    }
}

/// Directory name of part `i` of `n`: `part-003-of-008`.
pub fn part_dir_name(i: usize, n: usize) -> String {
    format!("part-{i:03}-of-{n:03}")
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), MediaError> {
    let mut json = serde_json::to_vec_pretty(v)
        .map_err(|e| MediaError::format(path, format!("cannot serialise: {e}")))?;
    json.push(b'\n');
    atomic_write(path, &json)
}

/// Runs the pre-extraction (see the module docs). `progress(done, total)` is called
/// (from worker threads) after each clip is finished, failed or found done.
///
/// Errors only for problems that concern the whole run (bad options, an unreadable
/// dataset, an unwritable output directory, a `.work` made with other options); a bad
/// clip is reported in the [`PrepareReport`] instead.
pub fn prepare(
    opts: &PrepareOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PrepareReport, MediaError> {
    let pipeline = ClipPipeline::new(opts)?;
    if opts.shard_size == 0 {
        return Err(MediaError::Invalid("shard_size must be > 0".into()));
    }
    let mut clips = dataset::scan(&opts.data_root)?;
    if let Some(keep) = &opts.splits {
        clips.retain(|c| keep.contains(&c.split));
    }
    // Every split gets an output, even a part that holds none of its clips (an empty
    // but complete split), so `merge_parts` can tell "empty" from "not run".
    let mut by_split: BTreeMap<String, Vec<ClipSource>> = clips
        .iter()
        .map(|c| (c.split.clone(), Vec::new()))
        .collect();
    if let Some((i, n)) = opts.shard {
        clips = dataset::shard_part(&clips, i, n)?;
    }
    let pinned = Pinned {
        frames_per_clip: opts.frames_per_clip,
        sampling: opts.sampling.with_count(opts.frames_per_clip),
        fps: opts.fps,
        crop_size: opts.crop_size,
        faces: pipeline.faces.clone(),
        mel: opts.mel.clone(),
        max_side: opts.max_side,
        shard_size: opts.shard_size,
        trim_leading_silence: opts.trim_leading_silence,
    };
    let layout = CacheLayout {
        frames: opts.frames_per_clip,
        image_size: opts.crop_size,
        n_mels: opts.mel.n_mels,
        mel_frames: pipeline.mel_frames(),
        sample_rate: opts.mel.sample_rate,
        fps: opts.fps,
        mel: opts.mel.clone(),
        audio_samples: pipeline.audio_samples(),
    };
    layout.validate()?;
    for c in clips {
        by_split.entry(c.split.clone()).or_default().push(c);
    }
    // Per split: is it complete already? Set up and check `.work`.
    let mut reports: BTreeMap<String, SplitReport> = BTreeMap::new();
    let mut todo: Vec<(ClipSource, PathBuf)> = Vec::new();
    let total: usize = by_split.values().map(Vec::len).sum();
    let done = AtomicUsize::new(0);
    for (split, list) in &by_split {
        let dir = split_dir(opts, split);
        let work = dir.join(WORK_DIR);
        let stamp = Stamp {
            options: pinned.clone(),
            clip_ids: list.iter().map(|c| c.clip_id.clone()).collect(),
        };
        let mut rep = SplitReport {
            split: split.clone(),
            dir: dir.clone(),
            clips: list.len(),
            ..SplitReport::default()
        };
        let stamp_path = dir.join(PREPARE_FILE);
        if dir.join(INDEX_FILE).is_file()
            && let Ok(bytes) = fs::read(&stamp_path)
            && serde_json::from_slice::<Stamp>(&bytes).is_ok_and(|s| s == stamp)
        {
            tracing::info!(split = %split, dir = %dir.display(), "split already complete");
            rep.complete = true;
            rep.reused = list.len();
            rep.written = cache::read_index(&dir)?.num_clips;
            progress(
                done.fetch_add(list.len(), Ordering::SeqCst) + list.len(),
                total,
            );
            reports.insert(split.clone(), rep);
            continue;
        }
        fs::create_dir_all(&work).map_err(|e| MediaError::io(&work, e))?;
        let opt_path = work.join(OPTIONS_FILE);
        match fs::read(&opt_path) {
            Ok(bytes) => {
                let old: Pinned = serde_json::from_slice(&bytes).map_err(|e| {
                    MediaError::format(&opt_path, format!("unreadable options: {e}"))
                })?;
                if old != pinned {
                    return Err(MediaError::format(
                        &opt_path,
                        "this unfinished run used different options; rerun with the same \
                         options, or delete the directory to start over",
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_json(&opt_path, &pinned)?,
            Err(e) => return Err(MediaError::io(&opt_path, e)),
        }
        for c in list {
            let fp = failed_path(&work, &c.clip_id);
            if done_path(&work, &c.clip_id).is_file() {
                rep.reused += 1;
                progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
            } else if fp.is_file() && !opts.retry_failed {
                let error = fs::read(&fp)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<FailedClip>(&b).ok())
                    .map(|f| f.error)
                    .unwrap_or_else(|| "failed in an earlier run".into());
                rep.failed.push(FailedClip {
                    split: split.clone(),
                    clip_id: c.clip_id.clone(),
                    file: c.video.clone(),
                    error,
                });
                progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
            } else {
                todo.push((c.clone(), work.clone()));
            }
        }
        reports.insert(split.clone(), rep);
    }

    // Process the pending clips in parallel.
    let claimed = AtomicUsize::new(0);
    let limit = opts.stop_after.unwrap_or(usize::MAX);
    let (t, s) = (opts.frames_per_clip, opts.crop_size);
    let outcomes: Vec<Option<(String, Result<ProcessedClip, FailedClip>)>> = todo
        .par_iter()
        .map(|(c, work)| {
            if claimed.fetch_add(1, Ordering::SeqCst) >= limit {
                return Ok(None);
            }
            let r = match pipeline.process(&c.video, fnv1a(&c.clip_id)) {
                Ok(p) => {
                    write_done(
                        &done_path(work, &c.clip_id),
                        c,
                        &p,
                        t,
                        s,
                        layout.n_mels,
                        layout.mel_frames,
                    )?;
                    Ok(p)
                }
                Err(e) => {
                    tracing::warn!(file = %c.video.display(), clip = %c.clip_id, error = %e, "skipping clip");
                    let f = FailedClip {
                        split: c.split.clone(),
                        clip_id: c.clip_id.clone(),
                        file: c.video.clone(),
                        error: e.to_string(),
                    };
                    write_json(&failed_path(work, &c.clip_id), &f)?;
                    Err(f)
                }
            };
            progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
            Ok(Some((c.split.clone(), r)))
        })
        .collect::<Result<_, MediaError>>()?;
    let interrupted = claimed.load(Ordering::SeqCst) > limit;
    for (split, r) in outcomes.into_iter().flatten() {
        let Some(rep) = reports.get_mut(&split) else {
            continue;
        };
        match r {
            Ok(p) => {
                rep.processed += 1;
                rep.fallback_frames += p.face_stats.fallback_frames;
                rep.clips_without_face += usize::from(p.face_stats.faces_found == 0);
                rep.clips_without_audio += usize::from(!p.audio_present);
            }
            Err(f) => rep.failed.push(f),
        }
    }

    // Assemble every split whose clips are all accounted for.
    for (split, list) in &by_split {
        let Some(rep) = reports.get_mut(split) else {
            continue;
        };
        if rep.complete {
            continue;
        }
        let work = rep.dir.join(WORK_DIR);
        let accounted = list.iter().all(|c| {
            done_path(&work, &c.clip_id).is_file() || failed_path(&work, &c.clip_id).is_file()
        });
        if !accounted {
            continue;
        }
        let mut writer = ShardWriter::create(&rep.dir, split, layout.clone(), opts.shard_size)?;
        for c in list {
            let dp = done_path(&work, &c.clip_id);
            if !dp.is_file() {
                continue;
            }
            let d = read_done(&dp, &layout)?;
            writer.push_with_audio(
                &d.meta.clip_id,
                ClipTensors {
                    frames: &d.frames,
                    mel: &d.mel,
                    audio: &d.audio,
                },
                d.meta.label,
                d.meta.audio_present,
                true,
                ClipMeta {
                    kind: d.meta.kind,
                    seed: 0,
                    details: d.meta.details,
                },
            )?;
        }
        let index = writer.finish()?;
        write_json(
            &rep.dir.join(PREPARE_FILE),
            &Stamp {
                options: pinned.clone(),
                clip_ids: list.iter().map(|c| c.clip_id.clone()).collect(),
            },
        )?;
        rep.written = index.num_clips;
        rep.complete = true;
        rep.failed.sort_by(|a, b| a.clip_id.cmp(&b.clip_id));
        if !opts.keep_work {
            fs::remove_dir_all(&work).map_err(|e| MediaError::io(&work, e))?;
        }
    }
    Ok(PrepareReport {
        splits: reports.into_values().collect(),
        interrupted,
    })
}

/// Joins the complete parts `out/part-<i>-of-<n>/<split>/` (`i` in `0..n`) into
/// `out/<split>/`, clips in `clip_id` order: the result is byte-identical to an unsharded
/// [`prepare`] with the same options. Every part of every split must be complete.
pub fn merge_parts(out: &Path, n: usize) -> Result<Vec<CacheIndex>, MediaError> {
    if n == 0 {
        return Err(MediaError::Invalid("merge_parts: n must be > 0".into()));
    }
    let parts: Vec<PathBuf> = (0..n).map(|i| out.join(part_dir_name(i, n))).collect();
    let mut splits: Vec<String> = Vec::new();
    for p in &parts {
        for e in fs::read_dir(p).map_err(|e| MediaError::io(p, e))? {
            let e = e.map_err(|e| MediaError::io(p, e))?;
            if e.path().join(INDEX_FILE).is_file() {
                let name = e.file_name().to_string_lossy().to_string();
                if !splits.contains(&name) {
                    splits.push(name);
                }
            }
        }
    }
    splits.sort();
    let mut result = Vec::new();
    for split in splits {
        struct Part {
            dir: PathBuf,
            index: CacheIndex,
            manifest: Vec<ManifestEntry>,
            next: usize,
            shard: Option<(usize, cache::ShardData)>,
        }
        let mut ps = Vec::new();
        for p in &parts {
            let dir = p.join(&split);
            let index = cache::read_index(&dir).map_err(|e| {
                MediaError::Invalid(format!(
                    "merge_parts: part of split {split} incomplete: {e}"
                ))
            })?;
            let manifest = cache::read_manifest(&dir)?;
            ps.push(Part {
                dir,
                index,
                manifest,
                next: 0,
                shard: None,
            });
        }
        let layout = ps[0].index.layout();
        // The stamp of the parts (same options) gives the shard size, and is carried over
        // for `prepare` reruns.
        let stamp = fs::read(ps[0].dir.join(PREPARE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Stamp>(&b).ok());
        let shard_size = match &stamp {
            Some(s) => s.options.shard_size,
            None => ps
                .iter()
                .filter_map(|p| p.index.shards.first().map(|s| s.clips))
                .max()
                .unwrap_or(1),
        };
        for p in &ps {
            if p.index.layout() != layout {
                return Err(MediaError::format(
                    p.dir.join(INDEX_FILE),
                    "layout differs from part 0's: the parts were made with different options",
                ));
            }
        }
        let dest = out.join(&split);
        let mut writer = ShardWriter::create(&dest, &split, layout.clone(), shard_size)?;
        let mut all_ids = Vec::new();
        loop {
            // The part whose next clip id is smallest.
            let pick = ps
                .iter()
                .enumerate()
                .filter(|(_, p)| p.next < p.manifest.len())
                .min_by(|a, b| {
                    a.1.manifest[a.1.next]
                        .clip_id
                        .cmp(&b.1.manifest[b.1.next].clip_id)
                })
                .map(|(i, _)| i);
            let Some(i) = pick else { break };
            let p = &mut ps[i];
            let m = p.manifest[p.next].clone();
            if p.shard.as_ref().is_none_or(|(s, _)| *s != m.shard) {
                p.shard = Some((m.shard, cache::read_shard(&p.dir, &p.index, m.shard)?));
            }
            let Some((_, data)) = &p.shard else {
                return Err(MediaError::Invalid("internal: shard not loaded".into()));
            };
            let (fl, ml, al) = (layout.frames_len(), layout.mel_len(), layout.audio_samples);
            let k = m.index_in_shard;
            writer.push_with_audio(
                &m.clip_id,
                ClipTensors {
                    frames: &data.frames[k * fl..(k + 1) * fl],
                    mel: &data.mel[k * ml..(k + 1) * ml],
                    audio: &data.audio[k * al..(k + 1) * al],
                },
                m.label,
                m.audio_present,
                m.video_present,
                ClipMeta {
                    kind: m.kind.clone(),
                    seed: m.seed,
                    details: m.details.clone(),
                },
            )?;
            all_ids.push(m.clip_id);
            p.next += 1;
        }
        let index = writer.finish()?;
        if let Some(s) = stamp {
            write_json(
                &dest.join(PREPARE_FILE),
                &Stamp {
                    options: s.options,
                    clip_ids: all_ids,
                },
            )?;
        }
        result.push(index);
    }
    Ok(result)
}
