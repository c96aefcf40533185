//! The inference engine: a checkpoint loaded once, video files in, fake probabilities out.
//!
//! **Preprocessing.** A file is probed first (stream headers only: size, duration, audio)
//! and checked against [`MediaLimits`] before anything is decoded. It is then cut into
//! *windows*: with `start_at` sampling (the default of `avfuse prepare`), consecutive runs
//! of `T * stride` frames from the first frame (from the end of the leading silence when the
//! training data was trimmed), `max(1, floor(frames / (T * stride)))` of them, the
//! remainder after the last full window being ignored (a clip shorter than one window is
//! padded with its last frame, as in training). Each window goes through exactly the
//! per-clip processing that built the training cache
//! ([`avfuse_media::prepare::ClipPipeline::process`], configured by
//! [`crate::preprocess::Preprocessing`]): decode, face tracking and crops, 16 kHz audio
//! and log-mel of `T * stride / fps` seconds from the window's first frame. Window 0 is
//! therefore bit-identical to the clip `avfuse prepare` would have stored. `uniform` and
//! `random` sampling give one window spread over the whole clip.
//!
//! **Model input.** As in training ([`avfuse_train::data::Dataset::host_batch`]): frames
//! `u8 / 255 - 0.5` as `[B, T, 3, S, S]`, log-mel `(dB - mel_mean) / mel_std` with the
//! checkpoint's normaliser, cut to the first `T * mel_frames_per_step` mel frames, as
//! `[B, 1, n_mels, T * mel_frames_per_step]`; an absent modality's input is zero and its
//! presence 0.
//!
//! **Outputs.** Per window, the model runs with both modalities present, with video only
//! and with audio only (presence masks `[1, 1]`, `[1, 0]`, `[0, 1]`; one batch). The
//! clip's `fake_probability` is the **mean** of its windows' probabilities (both
//! modalities), and `per_modality.video` / `.audio` the means of the single-modality runs.
//! A clip without an audio track is predicted from video alone (presence `[1, 0]`):
//! `audio_present` is false, `per_modality.audio` is null and `fake_probability` equals
//! `per_modality.video`. A modality whose branch the model lacks is null as well. `label`
//! is the checkpoint's label name for `fake_probability >= threshold` (threshold from the
//! checkpoint's `evaluation.threshold` unless overridden).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use avfuse_models::AvModel;
use avfuse_train::DeviceSpec;
use avfuse_train::checkpoint::{Checkpoint, CheckpointMeta};
use avfuse_train::data::HostBatch;
use avfuse_train::predict::{sigmoid, softmax};
use avfuse_train::trainer::{BURN_VERSION, load_model};
use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ServeError};
use crate::preprocess::{Preprocessing, PreprocessingSource};

/// How to load an [`Inference`].
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Compute device (default: the CPU backend, Flex).
    pub device: DeviceSpec,
    /// A `prepare.json` with the training data's preprocessing options (default: derived
    /// from the checkpoint's layout, see [`crate::preprocess`]).
    pub preprocessing: Option<PathBuf>,
    /// Decision threshold on the fake probability (default: the checkpoint's
    /// `evaluation.threshold`).
    pub threshold: Option<f64>,
    /// Windows preprocessed before each model call (bounds memory on long clips; default 8).
    pub window_batch: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Cpu,
            preprocessing: None,
            threshold: None,
            window_batch: 8,
        }
    }
}

/// Limits checked on a file's stream headers before it is decoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaLimits {
    /// Longest clip accepted, seconds (default 120).
    pub max_duration_s: f64,
    /// Largest frame accepted, `width * height` pixels (default 4096 x 2160).
    pub max_frame_pixels: u64,
    /// Longest frame side accepted, pixels (default 4096).
    pub max_frame_side: u32,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self {
            max_duration_s: 120.0,
            max_frame_pixels: 4096 * 2160,
            max_frame_side: 4096,
        }
    }
}

impl MediaLimits {
    /// Error unless every limit is positive and finite.
    pub fn validate(&self) -> Result<()> {
        if !(self.max_duration_s.is_finite() && self.max_duration_s > 0.0) {
            return Err(ServeError::Config(format!(
                "max_duration_s = {}: must be a finite number > 0",
                self.max_duration_s
            )));
        }
        if self.max_frame_pixels == 0 || self.max_frame_side == 0 {
            return Err(ServeError::Config(
                "max_frame_pixels and max_frame_side must be > 0".into(),
            ));
        }
        Ok(())
    }
}

/// Probability of one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowScore {
    /// Time of the window's first frame, seconds from the clip's first frame.
    pub start_s: f64,
    /// End of the window (its first frame + `T * stride` frame durations), seconds.
    pub end_s: f64,
    /// Fake probability of the window (both modalities as present).
    pub fake_probability: f64,
}

/// The model run with one modality only (null when impossible: no such track in the
/// clip, or no such branch in the model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerModality {
    /// Video only (audio presence 0): mean over windows.
    pub video: Option<f64>,
    /// Audio only (video presence 0): mean over windows.
    pub audio: Option<f64>,
}

/// The prediction for one file (one JSON line of `avfuse predict`, the body of a
/// successful `POST /v1/predict`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The file as the caller named it (an upload's file name).
    pub path: String,
    /// Mean of the windows' fake probabilities, in [0, 1].
    pub fake_probability: f64,
    /// The checkpoint's label name for `fake_probability >= threshold`.
    pub label: String,
    /// Single-modality probabilities.
    pub per_modality: PerModality,
    /// Per-window probabilities, in time order.
    pub windows: Vec<WindowScore>,
    /// Frames on which the face detector found a face, summed over windows (0: every crop
    /// is the centre-crop fallback).
    pub faces_found: usize,
    /// Whether the file has an audio track; false means video-only prediction.
    pub audio_present: bool,
    /// Multi-class checkpoints only: the mean over windows of each class's softmax
    /// probability, keyed by the checkpoint's class names (the first is the real class, and
    /// `fake_probability` is 1 minus its probability). `label` is then the real class below
    /// the threshold, else the most probable fake class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_probabilities: Option<BTreeMap<String, f64>>,
    /// Wall time of preprocessing and inference, milliseconds.
    pub ms: f64,
}

/// One preprocessed window, in the training cache's layout.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipWindow {
    /// Time of the first frame, seconds.
    pub start_s: f64,
    /// End of the window, seconds.
    pub end_s: f64,
    /// Face crops, u8 `[T, 3, S, S]`.
    pub frames: Vec<u8>,
    /// Log-mel, f32 dB `[n_mels, mel_frames]`.
    pub mel: Vec<f32>,
    /// Frames where a face was detected.
    pub faces_found: usize,
}

/// Model outputs for a list of windows.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    /// Both modalities as present, per window.
    pub main: Vec<f64>,
    /// Video only, per window (`None` when not computable).
    pub video: Option<Vec<f64>>,
    /// Audio only, per window (`None` when not computable).
    pub audio: Option<Vec<f64>>,
    /// Multi-class checkpoints: the class probabilities of each window (both modalities as
    /// present), `[windows][K]`; empty for a binary checkpoint.
    pub main_classes: Vec<Vec<f64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Main,
    Video,
    Audio,
}

/// A loaded model with its preprocessing; shared by threads (`Send + Sync`).
pub struct Inference {
    model: AvModel,
    device: Device,
    device_spec: DeviceSpec,
    meta: CheckpointMeta,
    path: PathBuf,
    prep: Preprocessing,
    prep_source: PreprocessingSource,
    threshold: f64,
    video_enabled: bool,
    audio_enabled: bool,
    window_batch: usize,
}

impl std::fmt::Debug for Inference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inference")
            .field("checkpoint", &self.path)
            .field("device", &self.device_spec)
            .field("layout", &self.meta.layout)
            .finish_non_exhaustive()
    }
}

impl Inference {
    /// Loads the checkpoint at `path` (see [`Inference::from_checkpoint`]).
    pub fn load(path: &Path, opts: &EngineOptions) -> Result<Self> {
        let ckpt = Checkpoint::load(path)?;
        Self::from_checkpoint(&ckpt, path, opts)
    }

    /// Builds the model of `ckpt` on the device (eval mode) and fixes the preprocessing
    /// (errors when it cannot produce the checkpoint's layout).
    pub fn from_checkpoint(ckpt: &Checkpoint, path: &Path, opts: &EngineOptions) -> Result<Self> {
        if opts.window_batch == 0 {
            return Err(ServeError::Config("window_batch must be >= 1".into()));
        }
        let meta = ckpt.meta.clone();
        let layout = meta.layout;
        let (prep, prep_source) = match &opts.preprocessing {
            Some(f) => (
                Preprocessing::from_file(f)?,
                PreprocessingSource::PrepareJson(f.display().to_string()),
            ),
            None => (
                Preprocessing::for_layout(&layout),
                PreprocessingSource::LayoutDefaults,
            ),
        };
        prep.check(&layout).map_err(|detail| ServeError::Layout {
            path: path.to_path_buf(),
            detail,
        })?;
        let threshold = opts.threshold.unwrap_or(meta.config.evaluation.threshold);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(ServeError::Config(format!(
                "threshold = {threshold}: must be in [0, 1]"
            )));
        }
        let device = opts.device.device()?;
        let model = load_model(ckpt, path, &device)?.valid();
        let m = &meta.config.model;
        Ok(Self {
            model,
            device,
            device_spec: opts.device,
            video_enabled: m.video.enabled,
            audio_enabled: m.audio.enabled,
            meta,
            path: path.to_path_buf(),
            prep,
            prep_source,
            threshold,
            window_batch: opts.window_batch,
        })
    }

    /// The checkpoint's metadata.
    pub fn meta(&self) -> &CheckpointMeta {
        &self.meta
    }

    /// The preprocessing in use.
    pub fn preprocessing(&self) -> &Preprocessing {
        &self.prep
    }

    /// The decision threshold in use.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Frames per window (`T * stride`).
    pub fn window_frames(&self) -> usize {
        self.prep.frames_per_clip * self.prep.stride()
    }

    /// What `GET /v1/model` returns: name, versions, config, metrics, layout, preprocessing.
    pub fn model_info(&self) -> serde_json::Value {
        let name = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        serde_json::json!({
            "name": name,
            "checkpoint": self.path.display().to_string(),
            "versions": {
                "checkpoint_avfuse": self.meta.avfuse_version,
                "checkpoint_burn": self.meta.burn_version,
                "server_avfuse": env!("CARGO_PKG_VERSION"),
                "server_burn": BURN_VERSION,
            },
            "epoch": self.meta.epoch,
            "step": self.meta.step,
            "labels": self.meta.labels,
            "threshold": self.threshold,
            "metrics": self.meta.val_metrics,
            "config": self.meta.config,
            "layout": self.meta.layout,
            "normalizer": self.meta.normalizer,
            "modalities": {"video": self.video_enabled, "audio": self.audio_enabled},
            "preprocessing": self.prep,
            "preprocessing_source": self.prep_source,
            "windows": {"frames": self.window_frames(), "aggregation": "mean"},
            "device": self.device_spec.to_string(),
        })
    }

    /// The label name for fake probability `p`: the first (real) label below the threshold;
    /// at or above it the second label of a binary checkpoint, or for a multi-class one
    /// (`class_probs` non-empty, one per label) the most probable fake class.
    pub fn label_for(&self, p: f64, class_probs: &[f64]) -> String {
        let fake = p >= self.threshold;
        if fake && class_probs.len() > 2 && class_probs.len() == self.meta.labels.len() {
            let best = (1..class_probs.len()).fold(1, |b, k| {
                if class_probs[k] > class_probs[b] {
                    k
                } else {
                    b
                }
            });
            return self.meta.labels[best].clone();
        }
        let i = usize::from(fake);
        self.meta
            .labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| ["real", "fake"][i].to_string())
    }

    fn rows(&self, audio_present: bool, path: &Path) -> Result<Vec<(Slot, [u8; 2])>> {
        Ok(
            match (self.video_enabled, self.audio_enabled, audio_present) {
                (true, true, true) => vec![
                    (Slot::Main, [1, 1]),
                    (Slot::Video, [1, 0]),
                    (Slot::Audio, [0, 1]),
                ],
                (true, _, _) => vec![(Slot::Main, [1, 0])],
                (false, true, true) => vec![(Slot::Main, [0, 1])],
                (false, _, _) => {
                    return Err(ServeError::NoUsableModality {
                        path: path.to_path_buf(),
                        detail: "the model uses audio only and the clip has no audio track".into(),
                    });
                }
            },
        )
    }

    /// Model input for `rows` (`(window, presence)`), exactly as
    /// [`avfuse_train::data::Dataset::host_batch`] builds it from a cache split.
    pub fn host_batch(&self, rows: &[(&ClipWindow, [u8; 2])]) -> HostBatch {
        let l = &self.meta.layout;
        let norm = &self.meta.normalizer;
        let b = rows.len();
        let frame_len = l.frames * 3 * l.image_size * l.image_size;
        let used_mel = l.frames * l.mel_frames_per_step;
        let mut frames = vec![0f32; b * frame_len];
        let mut mel = vec![0f32; b * l.n_mels * used_mel];
        let mut presence = vec![0f32; b * 2];
        for (k, (w, p)) in rows.iter().enumerate() {
            presence[k * 2] = f32::from(p[0]);
            presence[k * 2 + 1] = f32::from(p[1]);
            if p[0] != 0 {
                for (d, &s) in frames[k * frame_len..(k + 1) * frame_len]
                    .iter_mut()
                    .zip(&w.frames)
                {
                    *d = f32::from(s) / 255.0 - 0.5;
                }
            }
            if p[1] != 0 {
                let dst = &mut mel[k * l.n_mels * used_mel..(k + 1) * l.n_mels * used_mel];
                for band in 0..l.n_mels {
                    let src = &w.mel[band * l.mel_frames..band * l.mel_frames + used_mel];
                    for (d, &v) in dst[band * used_mel..(band + 1) * used_mel]
                        .iter_mut()
                        .zip(src)
                    {
                        *d = (v - norm.mel_mean) / norm.mel_std;
                    }
                }
            }
        }
        HostBatch {
            frames,
            mel,
            presence,
            labels: vec![0.0; b],
            batch: b,
            frames_per_clip: l.frames,
            image_size: l.image_size,
            n_mels: l.n_mels,
            mel_frames: used_mel,
        }
    }

    /// Runs the model on `windows` (one batch): both modalities as present, and each alone
    /// where possible (see the module docs). `path` names the clip in errors.
    pub fn score(
        &self,
        windows: &[ClipWindow],
        audio_present: bool,
        path: &Path,
    ) -> Result<Scores> {
        let l = &self.meta.layout;
        let frame_len = l.frames * 3 * l.image_size * l.image_size;
        for w in windows {
            if w.frames.len() != frame_len || w.mel.len() != l.n_mels * l.mel_frames {
                return Err(ServeError::Layout {
                    path: self.path.clone(),
                    detail: format!(
                        "a window of {} frame bytes and {} mel values does not fit the layout \
                         ({frame_len} and {})",
                        w.frames.len(),
                        w.mel.len(),
                        l.n_mels * l.mel_frames
                    ),
                });
            }
        }
        let kinds = self.rows(audio_present, path)?;
        let rows: Vec<(&ClipWindow, [u8; 2])> = windows
            .iter()
            .flat_map(|w| kinds.iter().map(move |&(_, p)| (w, p)))
            .collect();
        let mut out = Scores {
            main: Vec::with_capacity(windows.len()),
            video: None,
            audio: None,
            main_classes: Vec::new(),
        };
        if rows.is_empty() {
            return Ok(out);
        }
        let (input, _) = self.host_batch(&rows).upload(&self.device);
        let logits = self
            .model
            .forward(input)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| ServeError::Model(format!("cannot read the output back: {e:?}")))?;
        let k = self.meta.labels.len().max(2);
        // A binary head has one logit per row; a multi-class head one per class.
        let per_row = if logits.len() == rows.len() { 1 } else { k };
        if logits.len() != rows.len() * per_row {
            return Err(ServeError::Model(format!(
                "{} outputs for {} inputs and {} classes",
                logits.len(),
                rows.len(),
                self.meta.labels.len()
            )));
        }
        let mut video = Vec::new();
        let mut audio = Vec::new();
        for (i, row) in logits.chunks(per_row).enumerate() {
            let p = if per_row == 1 {
                sigmoid(f64::from(row[0]))
            } else {
                let probs = softmax(&row.iter().map(|&x| f64::from(x)).collect::<Vec<_>>());
                let fake = 1.0 - probs[0];
                if kinds[i % kinds.len()].0 == Slot::Main {
                    out.main_classes.push(probs);
                }
                fake
            };
            match kinds[i % kinds.len()].0 {
                Slot::Main => out.main.push(p),
                Slot::Video => video.push(p),
                Slot::Audio => audio.push(p),
            }
        }
        let has = |s: Slot| kinds.iter().any(|k| k.0 == s);
        out.video = if has(Slot::Video) {
            Some(video)
        } else if self.video_enabled {
            Some(out.main.clone())
        } else {
            None
        };
        out.audio = if has(Slot::Audio) {
            Some(audio)
        } else if self.audio_enabled && !self.video_enabled && audio_present {
            Some(out.main.clone())
        } else {
            None
        };
        Ok(out)
    }

    /// Predicts on the video file `path`; `name` is what the result calls it. Checks
    /// `limits` on the headers first. `cancel` (set by a caller that gave up) stops the
    /// work between windows with [`ServeError::Cancelled`].
    pub fn predict_file(
        &self,
        path: &Path,
        name: &str,
        limits: &MediaLimits,
        cancel: Option<&AtomicBool>,
    ) -> Result<Prediction> {
        let started = Instant::now();
        let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
        let info = video::probe(path, limits)?;
        let plan = video::plan(&self.prep, path, &info)?;
        let mut main = Vec::with_capacity(plan.starts.len());
        let (mut vid, mut aud) = (Some(Vec::new()), Some(Vec::new()));
        let mut windows = Vec::with_capacity(plan.starts.len());
        let mut faces_found = 0;
        let mut class_sums: Vec<f64> = Vec::new();
        let mut audio_present = info.has_audio;
        for chunk in plan.starts.chunks(self.window_batch) {
            let mut ws = Vec::with_capacity(chunk.len());
            for &first in chunk {
                if cancelled() {
                    return Err(ServeError::Cancelled);
                }
                let (w, has_audio) = video::window(&self.prep, path, &plan, first)?;
                audio_present = has_audio;
                ws.push(w);
            }
            if cancelled() {
                return Err(ServeError::Cancelled);
            }
            let s = self.score(&ws, audio_present, path)?;
            for (w, &p) in ws.iter().zip(&s.main) {
                faces_found += w.faces_found;
                windows.push(WindowScore {
                    start_s: w.start_s,
                    end_s: w.end_s,
                    fake_probability: p,
                });
            }
            main.extend(s.main);
            for probs in &s.main_classes {
                class_sums.resize(probs.len(), 0.0);
                for (acc, p) in class_sums.iter_mut().zip(probs) {
                    *acc += p;
                }
            }
            match (s.video, vid.as_mut()) {
                (Some(v), Some(acc)) => acc.extend(v),
                _ => vid = None,
            }
            match (s.audio, aud.as_mut()) {
                (Some(a), Some(acc)) => acc.extend(a),
                _ => aud = None,
            }
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let fake_probability = mean(&main).ok_or_else(|| ServeError::NoFrames {
            path: path.to_path_buf(),
        })?;
        let class_probs: Vec<f64> = class_sums.iter().map(|s| s / main.len() as f64).collect();
        let prediction = Prediction {
            path: name.to_string(),
            fake_probability,
            label: self.label_for(fake_probability, &class_probs),
            class_probabilities: (!class_probs.is_empty()).then(|| {
                self.meta
                    .labels
                    .iter()
                    .cloned()
                    .zip(class_probs.iter().copied())
                    .collect()
            }),
            per_modality: PerModality {
                video: vid.as_deref().and_then(mean),
                audio: aud.as_deref().and_then(mean),
            },
            windows,
            faces_found,
            audio_present,
            ms: started.elapsed().as_secs_f64() * 1e3,
        };
        tracing::debug!(
            file = %path.display(),
            p = prediction.fake_probability,
            windows = prediction.windows.len(),
            ms = prediction.ms,
            "predicted"
        );
        Ok(prediction)
    }
}

/// The window plan of one file.
#[derive(Clone, Debug)]
pub struct WindowPlan {
    /// Frame rate of the file (frames per second).
    pub fps: f64,
    /// Duration of the file, seconds.
    pub duration_s: f64,
    /// First frame of each window.
    pub starts: Vec<usize>,
}

#[cfg(feature = "ffmpeg")]
mod video {
    use std::path::Path;

    use avfuse_media::MediaError;
    use avfuse_media::decode::{self, MediaInfo};
    use avfuse_media::image_ops::hwc_to_chw;
    use avfuse_media::prepare::{ClipPipeline, PrepareOptions};
    use avfuse_media::sampling::Sampling;
    use avfuse_media::silence::leading_silence;

    use super::{ClipWindow, MediaLimits, WindowPlan};
    use crate::error::{Result, ServeError};
    use crate::preprocess::Preprocessing;

    /// Sorts an avfuse-media error about `path` into the service's kinds.
    pub(super) fn media_error(path: &Path, e: MediaError) -> ServeError {
        match e {
            MediaError::Io { path, source } => ServeError::Io { path, source },
            MediaError::Format { detail, .. } | MediaError::Invalid(detail) => {
                let path = path.to_path_buf();
                if detail.starts_with("no video stream") {
                    ServeError::NoVideoStream { path }
                } else if detail.contains("neither a frame count nor a duration")
                    || detail.contains("the clip has no frames")
                {
                    // The headers say there is nothing to decode. (A stream whose headers
                    // promise frames that cannot be decoded is `InvalidMedia`: truncated.)
                    ServeError::NoFrames { path }
                } else {
                    ServeError::InvalidMedia { path, detail }
                }
            }
        }
    }

    /// Headers only: the file's properties, checked against `limits`.
    pub(super) fn probe(path: &Path, limits: &MediaLimits) -> Result<MediaInfo> {
        let info = decode::open(path).map_err(|e| media_error(path, e))?;
        let (w, h) = (info.width, info.height);
        if u64::from(w) * u64::from(h) > limits.max_frame_pixels || w.max(h) > limits.max_frame_side
        {
            return Err(ServeError::FrameTooLarge {
                path: path.to_path_buf(),
                width: w,
                height: h,
                max_pixels: limits.max_frame_pixels,
                max_side: limits.max_frame_side,
            });
        }
        let duration_s = info.duration_s.max(info.num_frames as f64 / info.fps);
        if duration_s > limits.max_duration_s {
            return Err(ServeError::TooLong {
                path: path.to_path_buf(),
                duration_s,
                max_s: limits.max_duration_s,
            });
        }
        if info.num_frames == 0 {
            return Err(ServeError::NoFrames {
                path: path.to_path_buf(),
            });
        }
        Ok(info)
    }

    /// The windows of a probed file (see the module docs of [`crate::engine`]).
    pub(super) fn plan(prep: &Preprocessing, path: &Path, info: &MediaInfo) -> Result<WindowPlan> {
        let n = info.num_frames;
        let fps = info.fps;
        let span = prep.frames_per_clip * prep.stride();
        let starts = match prep.sampling {
            Sampling::StartAt { start_s, .. } => {
                let mut first = (start_s * fps).round() as usize;
                if let Some(th) = prep.trim_leading_silence {
                    let rate = prep.mel.sample_rate;
                    if let Some(a) =
                        decode::read_audio_track(path, rate).map_err(|e| media_error(path, e))?
                    {
                        let trimmed =
                            leading_silence(&a, rate, th).map_err(|e| media_error(path, e))?;
                        first += ((trimmed * fps).round() as usize).min(n.saturating_sub(1));
                    }
                }
                if first >= n {
                    return Err(ServeError::InvalidMedia {
                        path: path.to_path_buf(),
                        detail: format!(
                            "the first window starts at frame {first}, past the clip's {n} frames"
                        ),
                    });
                }
                let count = ((n - first) / span).max(1);
                (0..count).map(|k| first + k * span).collect()
            }
            Sampling::Uniform { .. } | Sampling::Random { .. } => vec![0],
        };
        Ok(WindowPlan {
            fps,
            duration_s: info.duration_s,
            starts,
        })
    }

    /// Preprocesses the window starting at frame `first`; also says whether the file has
    /// audio.
    pub(super) fn window(
        prep: &Preprocessing,
        path: &Path,
        plan: &WindowPlan,
        first: usize,
    ) -> Result<(ClipWindow, bool)> {
        let t = prep.frames_per_clip;
        let s = prep.crop_size;
        let start_s = first as f64 / plan.fps;
        let (sampling, end_s) = match prep.sampling {
            Sampling::StartAt { stride, .. } => (
                Sampling::StartAt {
                    start_s,
                    count: t,
                    stride,
                },
                start_s + (t * stride.max(1)) as f64 / plan.fps,
            ),
            ref other => (other.with_count(t), plan.duration_s),
        };
        let opts = PrepareOptions {
            frames_per_clip: t,
            sampling,
            fps: prep.fps,
            crop_size: s,
            faces: prep.faces.clone(),
            mel: prep.mel.clone(),
            max_side: prep.max_side,
            trim_leading_silence: None,
            ..PrepareOptions::default()
        };
        let pipeline = ClipPipeline::new(&opts)
            .map_err(|e| ServeError::Config(format!("preprocessing: {e}")))?;
        let p = pipeline
            .process(path, 0)
            .map_err(|e| media_error(path, e))?;
        Ok((
            ClipWindow {
                start_s,
                end_s,
                frames: hwc_to_chw(&p.crops, t, s, s, 3),
                mel: p.mel,
                faces_found: p.face_stats.faces_found,
            },
            p.audio_present,
        ))
    }
}

#[cfg(not(feature = "ffmpeg"))]
mod video {
    use std::path::Path;

    use super::{ClipWindow, MediaLimits, WindowPlan};
    use crate::error::{Result, ServeError};
    use crate::preprocess::Preprocessing;

    /// Probe stand-in: what a file has.
    pub(super) struct Info {
        pub has_audio: bool,
    }

    pub(super) fn probe(_path: &Path, _limits: &MediaLimits) -> Result<Info> {
        Err(ServeError::NoFfmpeg)
    }

    pub(super) fn plan(_prep: &Preprocessing, _path: &Path, _info: &Info) -> Result<WindowPlan> {
        Err(ServeError::NoFfmpeg)
    }

    pub(super) fn window(
        _prep: &Preprocessing,
        _path: &Path,
        _plan: &WindowPlan,
        _first: usize,
    ) -> Result<(ClipWindow, bool)> {
        Err(ServeError::NoFfmpeg)
    }
}

/// Preprocesses the window of `path` starting at frame `first` with `inference`'s
/// preprocessing, exactly as [`Inference::predict_file`] does (for tests that compare it
/// with `avfuse prepare`'s output). Needs the `ffmpeg` feature.
#[cfg(feature = "ffmpeg")]
pub fn window_at(inference: &Inference, path: &Path, first: usize) -> Result<ClipWindow> {
    let info = video::probe(path, &MediaLimits::default())?;
    let plan = video::plan(&inference.prep, path, &info)?;
    video::window(&inference.prep, path, &plan, first).map(|(w, _)| w)
}
