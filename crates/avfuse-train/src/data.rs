//! Datasets in the pre-extracted cache format and the batcher that turns them into model
//! input.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use avfuse_media::MediaError;
use avfuse_media::augment::AugmentConfig;
use avfuse_media::cache::{SplitData, read_split};
use avfuse_media::mel::LogMel;
use avfuse_models::{AvInput, Modality};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::trainer::derive_seed;

/// Which modalities are fed to the model at evaluation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModalitySet {
    /// Both video and audio (as present in the data).
    Both,
    /// Video only: audio presence 0 and audio input zeroed.
    VideoOnly,
    /// Audio only: video presence 0 and video input zeroed.
    AudioOnly,
}

impl ModalitySet {
    /// All sets, in report order.
    pub const ALL: [ModalitySet; 3] = [
        ModalitySet::Both,
        ModalitySet::VideoOnly,
        ModalitySet::AudioOnly,
    ];

    /// Name used in reports (`both`, `video_only`, `audio_only`).
    pub fn name(self) -> &'static str {
        match self {
            ModalitySet::Both => "both",
            ModalitySet::VideoOnly => "video_only",
            ModalitySet::AudioOnly => "audio_only",
        }
    }

    /// Parse a report name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether this set keeps modality `m` present (where the data has it).
    pub fn keeps(self, m: Modality) -> bool {
        matches!(
            (self, m),
            (ModalitySet::Both, _)
                | (ModalitySet::VideoOnly, Modality::Video)
                | (ModalitySet::AudioOnly, Modality::Audio)
        )
    }
}

/// Input normalisation, computed on the training split and stored in checkpoints so that
/// evaluation and serving see exactly what training saw.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalizer {
    /// Mean of the log-mel values (dB) over present training clips.
    pub mel_mean: f32,
    /// Standard deviation of the log-mel values (dB), at least 1e-3.
    pub mel_std: f32,
}

/// Shape of the clips in a dataset; must match between training and evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Video frames per clip (`T`).
    pub frames: usize,
    /// Frame side in pixels.
    pub image_size: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Mel frames stored per clip.
    pub mel_frames: usize,
    /// Mel frames per video frame (the model uses the first `frames * this` mel frames).
    pub mel_frames_per_step: usize,
}

/// One split loaded into memory.
pub struct Dataset {
    /// The split directory.
    pub dir: PathBuf,
    /// The raw clips.
    pub data: SplitData,
    /// Its layout.
    pub layout: Layout,
    /// Training target per clip: the binary label (0 real, 1 fake), or with
    /// [`Dataset::set_classes`] the class index.
    pub targets: Vec<u8>,
    /// The cache's log-mel extractor when it stores waveforms: waveform augmentations
    /// recompute each augmented clip's mel from its samples with it.
    logmel: Option<std::sync::Arc<LogMel>>,
}

impl Dataset {
    /// Load the split at `dir` (`<dir>/index.json` + shards).
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(TrainError::Data {
                path: dir.to_path_buf(),
                detail: "no such directory (create it with `avfuse synth` or `avfuse prepare`)"
                    .into(),
            });
        }
        let data = read_split(dir)?;
        let ix = &data.index;
        let bad = |detail: String| TrainError::Data {
            path: dir.to_path_buf(),
            detail,
        };
        if ix.num_clips == 0 {
            return Err(bad("the split has no clips".into()));
        }
        if ix.channels != 3 {
            return Err(bad(format!(
                "frames have {} channels, expected 3 (RGB)",
                ix.channels
            )));
        }
        if ix.image_size == 0 || ix.n_mels == 0 {
            return Err(bad(format!(
                "image_size {} and n_mels {} must both be > 0",
                ix.image_size, ix.n_mels
            )));
        }
        if ix.frames == 0 || ix.mel_frames < 1 + ix.frames {
            return Err(bad(format!(
                "{} mel frames for {} video frames: need at least one mel frame per video frame",
                ix.mel_frames, ix.frames
            )));
        }
        let per_step = (ix.mel_frames - 1) / ix.frames;
        let logmel = if ix.audio_samples > 0 {
            Some(std::sync::Arc::new(
                LogMel::new(&ix.mel).map_err(|e| bad(format!("index.json mel settings: {e}")))?,
            ))
        } else {
            None
        };
        Ok(Self {
            logmel,
            dir: dir.to_path_buf(),
            layout: Layout {
                frames: ix.frames,
                image_size: ix.image_size,
                n_mels: ix.n_mels,
                mel_frames: ix.mel_frames,
                mel_frames_per_step: per_step,
            },
            targets: data.labels.clone(),
            data,
        })
    }

    /// Load the split at `dir` with the class list `classes` (`dataset.classes`; `None`
    /// for binary labels): [`Dataset::load`], then [`Dataset::set_classes`].
    pub fn load_with_classes(dir: &Path, classes: Option<&[String]>) -> Result<Self> {
        let mut ds = Self::load(dir)?;
        if let Some(classes) = classes {
            ds.set_classes(classes)?;
        }
        Ok(ds)
    }

    /// Multi-class targets: clip `i`'s target becomes the position of its manifest `kind`
    /// in `classes`. Errors name the clip when its kind is not listed, or when its binary
    /// label disagrees with the convention that `classes[0]` is the real class.
    pub fn set_classes(&mut self, classes: &[String]) -> Result<()> {
        let mut targets = Vec::with_capacity(self.len());
        for (clip, &label) in self.data.clips.iter().zip(&self.data.labels) {
            let bad = |detail: String| TrainError::Data {
                path: self.dir.join(avfuse_media::cache::MANIFEST_FILE),
                detail: format!("clip {:?}: {detail}", clip.clip_id),
            };
            let k = classes
                .iter()
                .position(|c| *c == clip.kind)
                .ok_or_else(|| {
                    bad(format!(
                        "kind {:?} is not one of dataset.classes {classes:?}",
                        clip.kind
                    ))
                })?;
            if (k == 0) != (label == 0) {
                return Err(bad(format!(
                    "label {label} ({}) but kind {:?}: the first of dataset.classes \
                     ({:?}) must be exactly the real (label 0) clips",
                    if label == 0 { "real" } else { "fake" },
                    clip.kind,
                    classes[0]
                )));
            }
            targets.push(u8::try_from(k).map_err(|_| bad(format!("class index {k} > 255")))?);
        }
        self.targets = targets;
        Ok(())
    }

    /// Number of clips.
    pub fn len(&self) -> usize {
        self.data.labels.len()
    }

    /// True when the split has no clips (never, after [`Dataset::load`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Error unless this split has the `expected` layout (the training layout).
    pub fn check_layout(&self, expected: &Layout) -> Result<()> {
        if &self.layout != expected {
            return Err(TrainError::Data {
                path: self.dir.clone(),
                detail: format!(
                    "layout {:?} differs from the model's {:?}",
                    self.layout, expected
                ),
            });
        }
        Ok(())
    }

    /// Mel statistics over the clips whose audio is present.
    pub fn normalizer(&self) -> Normalizer {
        let per = self.layout.n_mels * self.layout.mel_frames;
        let (mut sum, mut sq, mut n) = (0f64, 0f64, 0usize);
        for (i, &present) in self.data.audio_present.iter().enumerate() {
            if present == 0 {
                continue;
            }
            for &v in &self.data.mel[i * per..(i + 1) * per] {
                let v = f64::from(v);
                sum += v;
                sq += v * v;
                n += 1;
            }
        }
        if n == 0 {
            return Normalizer {
                mel_mean: 0.0,
                mel_std: 1.0,
            };
        }
        let mean = sum / n as f64;
        let var = (sq / n as f64 - mean * mean).max(0.0);
        Normalizer {
            mel_mean: mean as f32,
            mel_std: (var.sqrt() as f32).max(1e-3),
        }
    }

    /// Data presence of clip `i` in [`Modality`] order.
    pub fn presence(&self, i: usize) -> [u8; 2] {
        [self.data.video_present[i], self.data.audio_present[i]]
    }

    /// Build model input for the clips `indices`.
    ///
    /// `presence[k]` is the presence of clip `indices[k]` in [`Modality`] order (data presence,
    /// possibly reduced by modality dropout or a [`ModalitySet`]); an absent modality's input
    /// is left at zero. Frames become `u8 / 255 - 0.5`, mel `(dB - mean) / std`, cut to the
    /// first `frames * mel_frames_per_step` mel frames.
    pub fn host_batch(
        &self,
        indices: &[usize],
        presence: &[[u8; 2]],
        norm: &Normalizer,
    ) -> HostBatch {
        self.host_batch_with(indices, presence, norm, &BatchOptions::default())
    }

    /// [`Dataset::host_batch`] with [`BatchOptions`]: which inputs are filled (with
    /// [`InputFill::Data`] a modality blanked by modality dropout (presence 0, data present)
    /// keeps its real input, for `coverage: zero_after_encoder`: the encoder runs on it and
    /// the model zeroes its features), and training-time augmentation, applied to the
    /// clip's cached u8 frames and dB mel before normalisation.
    pub fn host_batch_with(
        &self,
        indices: &[usize],
        presence: &[[u8; 2]],
        norm: &Normalizer,
        opts: &BatchOptions,
    ) -> HostBatch {
        let l = &self.layout;
        let b = indices.len();
        let frame_len = l.frames * 3 * l.image_size * l.image_size;
        let used_mel = l.frames * l.mel_frames_per_step;
        let mut frames = vec![0f32; b * frame_len];
        let mut mel = vec![0f32; b * l.n_mels * used_mel];
        let mel_len = l.n_mels * used_mel;
        let pres: Vec<f32> = presence
            .iter()
            .flat_map(|p| [f32::from(p[0]), f32::from(p[1])])
            .collect();
        // Rows are independent (augmentation draws from the clip's own seed): fill them in
        // parallel. Chunk sizes are > 0 (`Dataset::load` rejects empty frames and mels).
        frames
            .par_chunks_mut(frame_len)
            .zip(mel.par_chunks_mut(mel_len))
            .zip(indices.par_iter().zip(presence))
            .for_each(|((frames, mel), (&i, p))| {
                let p = match opts.fill {
                    InputFill::Present => *p,
                    InputFill::Data => self.presence(i),
                };
                if p[Modality::Video as usize] != 0 {
                    self.fill_frames(i, frames, opts.augment.as_ref());
                }
                if p[Modality::Audio as usize] != 0 {
                    self.fill_mel(i, mel, norm, opts.augment.as_ref());
                }
            });
        let labels = indices
            .iter()
            .map(|&i| f32::from(self.targets[i]))
            .collect();
        HostBatch {
            frames,
            mel,
            presence: pres,
            labels,
            batch: b,
            frames_per_clip: l.frames,
            image_size: l.image_size,
            n_mels: l.n_mels,
            mel_frames: used_mel,
        }
    }

    /// Clip `i`'s frames, augmented if asked, as `u8 / 255 - 0.5` into `out` (`[T, 3, H, W]`).
    fn fill_frames(&self, i: usize, out: &mut [f32], augment: Option<&Augment>) {
        let l = &self.layout;
        let len = out.len();
        let src = &self.data.frames[i * len..(i + 1) * len];
        let src = augmented(src, i, "video", augment, |a, v| {
            a.policy
                .video_planar(v, l.frames, l.image_size, a.clip_seed(i))
        });
        for (d, &s) in out.iter_mut().zip(src.iter()) {
            *d = f32::from(s) / 255.0 - 0.5;
        }
    }

    /// Whether waveform augmentations (noise at an SNR, pitch shift, time shift) apply to
    /// this split:
    /// the policy has them and the cache stores waveforms.
    pub fn waveform_augmentation(&self, policy: &AugmentConfig) -> bool {
        policy.needs_waveform() && self.logmel.is_some()
    }

    /// Clip `i`'s mel, augmented if asked, cut to the used mel frames and normalised by
    /// `norm`, into `out` (`[n_mels, T * mel_frames_per_step]`).
    ///
    /// With waveform augmentations ([`Dataset::waveform_augmentation`]) the clip's cached
    /// samples are augmented (pitch, noise at an SNR, gain, time shift) and its log-mel
    /// recomputed with
    /// the cache's own settings, then SpecAugment-masked; otherwise the cached log-mel gets
    /// the gain (a dB offset) and the masks.
    fn fill_mel(&self, i: usize, out: &mut [f32], norm: &Normalizer, augment: Option<&Augment>) {
        let l = &self.layout;
        let used = l.frames * l.mel_frames_per_step;
        let per = l.n_mels * l.mel_frames;
        let src = &self.data.mel[i * per..(i + 1) * per];
        let src = match &self.logmel {
            Some(logmel) if augment.is_some_and(|a| a.policy.needs_waveform()) => {
                augmented(src, i, "waveform", augment, |a, v| {
                    let n = self.data.index.audio_samples;
                    let mut wave = self.data.audio[i * n..(i + 1) * n].to_vec();
                    let seed = a.clip_seed(i);
                    a.policy
                        .audio(&mut wave, self.data.index.sample_rate, seed)?;
                    let mel = logmel.compute(&wave);
                    if mel.len() != v.len() {
                        return Err(MediaError::Invalid(format!(
                            "{} mel values from {n} samples, expected {}",
                            mel.len(),
                            v.len()
                        )));
                    }
                    v.copy_from_slice(&mel);
                    a.policy.mel(v, l.n_mels, l.mel_frames, seed)
                })
            }
            _ => augmented(src, i, "mel", augment, |a, v| {
                a.policy.log_mel(v, l.n_mels, l.mel_frames, a.clip_seed(i))
            }),
        };
        for band in 0..l.n_mels {
            let s = &src[band * l.mel_frames..band * l.mel_frames + used];
            for (d, &v) in out[band * used..(band + 1) * used].iter_mut().zip(s) {
                *d = (v - norm.mel_mean) / norm.mel_std;
            }
        }
    }

    /// [`Dataset::host_batch`] uploaded to `device` (the model input; labels are separate,
    /// see [`Dataset::labels`]).
    pub fn batch(
        &self,
        indices: &[usize],
        presence: &[[u8; 2]],
        norm: &Normalizer,
        device: &Device,
    ) -> AvInput {
        self.host_batch(indices, presence, norm).upload(device).0
    }

    /// Targets of `indices` as a `[B, 1]` float tensor (binary: 1 = fake; multi-class: the
    /// class index).
    pub fn labels(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let v: Vec<f32> = indices
            .iter()
            .map(|&i| f32::from(self.targets[i]))
            .collect();
        Tensor::from_data(TensorData::new(v, [indices.len(), 1]), device)
    }

    /// Presence of every clip under a [`ModalitySet`].
    pub fn presence_for(&self, set: ModalitySet) -> Vec<[u8; 2]> {
        (0..self.len())
            .map(|i| {
                let p = self.presence(i);
                let mut out = [0u8; 2];
                for m in Modality::ALL {
                    out[m as usize] = if set.keeps(m) { p[m as usize] } else { 0 };
                }
                out
            })
            .collect()
    }
}

/// Which inputs [`Dataset::host_batch_with`] fills with data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputFill {
    /// Only modalities whose (possibly dropped) presence is 1; the others stay zero.
    #[default]
    Present,
    /// Every modality the clip has data for, whatever the presence says.
    Data,
}

/// Clip `clip`'s cached `src`, or with `augment` a copy changed in place by `apply`. The
/// buffers have the dataset's own layout, so `apply` cannot fail on their shape; if it fails
/// anyway, the clip stays unaugmented and a warning names it.
fn augmented<'a, T: Clone>(
    src: &'a [T],
    clip: usize,
    what: &str,
    augment: Option<&Augment>,
    apply: impl FnOnce(&Augment, &mut [T]) -> std::result::Result<(), MediaError>,
) -> Cow<'a, [T]> {
    let Some(a) = augment else {
        return Cow::Borrowed(src);
    };
    let mut v = src.to_vec();
    match apply(a, &mut v) {
        Ok(()) => Cow::Owned(v),
        Err(e) => {
            tracing::warn!(clip, "{what} augmentation skipped: {e}");
            Cow::Borrowed(src)
        }
    }
}

/// Training-time augmentation of a batch: the policy and the epoch's seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// What to apply (`dataset.augment`).
    pub policy: AugmentConfig,
    /// The epoch's augmentation seed; clip `i` draws from [`Augment::clip_seed`]`(i)`, so a
    /// clip's augmentation depends on the seed and its index, not on the batch it lands in.
    pub seed: u64,
}

impl Augment {
    /// Seed of clip `i` (its index in the split).
    pub fn clip_seed(&self, i: usize) -> u64 {
        derive_seed(self.seed, i as u64)
    }
}

/// How [`Dataset::host_batch_with`] builds a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchOptions {
    /// Which inputs are filled with data.
    pub fill: InputFill,
    /// Training-time augmentation (training split only), none by default.
    pub augment: Option<Augment>,
}

impl From<InputFill> for BatchOptions {
    fn from(fill: InputFill) -> Self {
        Self {
            fill,
            augment: None,
        }
    }
}

/// One batch prepared on the host (normalised, absent modalities zeroed), ready to upload.
/// Built off the training thread by [`prefetch`].
#[derive(Clone, Debug, PartialEq)]
pub struct HostBatch {
    /// `[B, T, 3, H, W]` frames, row-major.
    pub frames: Vec<f32>,
    /// `[B, 1, n_mels, T * mel_frames_per_step]` log-mel, row-major.
    pub mel: Vec<f32>,
    /// `[B, 2]` presence.
    pub presence: Vec<f32>,
    /// `[B]` targets ([`Dataset::targets`]: binary 1 = fake, or the class index).
    pub labels: Vec<f32>,
    /// `B`.
    pub batch: usize,
    /// `T`.
    pub frames_per_clip: usize,
    /// `H = W`.
    pub image_size: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Mel frames used (`T * mel_frames_per_step`).
    pub mel_frames: usize,
}

impl HostBatch {
    /// Upload to `device`: the model input and the `[B, 1]` labels.
    pub fn upload(self, device: &Device) -> (AvInput, Tensor<2>) {
        let b = self.batch;
        let input = AvInput {
            frames: Tensor::from_data(
                TensorData::new(
                    self.frames,
                    [b, self.frames_per_clip, 3, self.image_size, self.image_size],
                ),
                device,
            ),
            mel: Tensor::from_data(
                TensorData::new(self.mel, [b, 1, self.n_mels, self.mel_frames]),
                device,
            ),
            presence: Tensor::from_data(TensorData::new(self.presence, [b, 2]), device),
        };
        let labels = Tensor::from_data(TensorData::new(self.labels, [b, 1]), device);
        (input, labels)
    }
}

/// Batches prepared ahead of the training loop by a background thread, at most this many
/// waiting (a bounded queue: memory stays at `PREFETCH_DEPTH` batches however slow the
/// consumer is).
pub const PREFETCH_DEPTH: usize = 2;

/// Host batches for the training loop, in order: exactly what [`Dataset::host_batch_with`]
/// gives for each `(indices, presence)` of the plan and the chosen [`BatchOptions`].
///
/// [`Prefetcher::spawn`] prepares them ahead on a background thread through a bounded queue
/// of [`PREFETCH_DEPTH`] (for GPU training, where the host work overlaps the device's).
/// [`Prefetcher::inline`] prepares each one when asked, on the calling thread: on a CPU
/// device the compute already uses every core, and an extra producer thread measured ~8 %
/// slower on the 2-core quickstart. Dropping a threaded prefetcher early (an error in the
/// loop) closes the queue; the producer sees that and exits, and the drop joins it.
pub struct Prefetcher {
    inner: Inner,
}

/// `(indices, presence)` of each batch, in order.
pub type Plan = Vec<(Vec<usize>, Vec<[u8; 2]>)>;

enum Inner {
    Thread {
        rx: Option<std::sync::mpsc::Receiver<HostBatch>>,
        handle: Option<std::thread::JoinHandle<()>>,
    },
    Inline {
        ds: std::sync::Arc<Dataset>,
        norm: Normalizer,
        plan: std::sync::Arc<Plan>,
        opts: BatchOptions,
        next: usize,
    },
}

impl Prefetcher {
    /// Prepare the batches of `plan` on a background thread, at most [`PREFETCH_DEPTH`] ahead.
    /// Falls back to [`Prefetcher::inline`] if the OS refuses a thread.
    pub fn spawn(
        ds: std::sync::Arc<Dataset>,
        norm: Normalizer,
        plan: Plan,
        opts: BatchOptions,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<HostBatch>(PREFETCH_DEPTH);
        // Shared, not copied: the inline fallback below needs the plan only if the thread
        // cannot start.
        let plan = std::sync::Arc::new(plan);
        let producer_ds = ds.clone();
        let producer_plan = plan.clone();
        let producer_opts = opts.clone();
        let handle = std::thread::Builder::new()
            .name("avfuse-prefetch".into())
            .spawn(move || {
                for (indices, presence) in producer_plan.iter() {
                    if tx
                        .send(producer_ds.host_batch_with(indices, presence, &norm, &producer_opts))
                        .is_err()
                    {
                        break; // the consumer stopped early
                    }
                }
            });
        match handle {
            Ok(h) => Self {
                inner: Inner::Thread {
                    rx: Some(rx),
                    handle: Some(h),
                },
            },
            Err(e) => {
                tracing::warn!("cannot start the prefetch thread ({e}); preparing batches inline");
                Self {
                    inner: Inner::Inline {
                        ds,
                        norm,
                        plan,
                        opts,
                        next: 0,
                    },
                }
            }
        }
    }

    /// Prepare each batch when it is asked for, on the calling thread.
    pub fn inline(
        ds: std::sync::Arc<Dataset>,
        norm: Normalizer,
        plan: Plan,
        opts: BatchOptions,
    ) -> Self {
        Self {
            inner: Inner::Inline {
                ds,
                norm,
                plan: std::sync::Arc::new(plan),
                opts,
                next: 0,
            },
        }
    }

    /// Whether a producer thread prepares the batches.
    pub fn is_threaded(&self) -> bool {
        matches!(self.inner, Inner::Thread { .. })
    }
}

impl Iterator for Prefetcher {
    type Item = HostBatch;

    fn next(&mut self) -> Option<HostBatch> {
        match &mut self.inner {
            Inner::Thread { rx, .. } => rx.as_ref()?.recv().ok(),
            Inner::Inline {
                ds,
                norm,
                plan,
                opts,
                next,
            } => {
                let (indices, presence) = plan.get(*next)?;
                *next += 1;
                Some(ds.host_batch_with(indices, presence, norm, opts))
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        if let Inner::Thread { rx, handle } = &mut self.inner {
            *rx = None; // close the queue first, so a blocked producer wakes up and exits
            if let Some(h) = handle.take()
                && h.join().is_err()
            {
                // A panic in the producer is a bug in host_batch; say so.
                tracing::error!("the prefetch thread panicked");
            }
        }
    }
}
