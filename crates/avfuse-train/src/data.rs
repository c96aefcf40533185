//! Datasets in the pre-extracted cache format and the batcher that turns them into model
//! input.

use std::path::{Path, PathBuf};

use avfuse_media::cache::{SplitData, read_split};
use avfuse_models::{AvInput, Modality};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

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

    fn keeps(self, m: Modality) -> bool {
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
        if ix.frames == 0 || ix.mel_frames < 1 + ix.frames {
            return Err(bad(format!(
                "{} mel frames for {} video frames: need at least one mel frame per video frame",
                ix.mel_frames, ix.frames
            )));
        }
        let per_step = (ix.mel_frames - 1) / ix.frames;
        Ok(Self {
            dir: dir.to_path_buf(),
            layout: Layout {
                frames: ix.frames,
                image_size: ix.image_size,
                n_mels: ix.n_mels,
                mel_frames: ix.mel_frames,
                mel_frames_per_step: per_step,
            },
            data,
        })
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
    pub fn batch(
        &self,
        indices: &[usize],
        presence: &[[u8; 2]],
        norm: &Normalizer,
        device: &Device,
    ) -> AvInput {
        let l = &self.layout;
        let b = indices.len();
        let frame_len = l.frames * 3 * l.image_size * l.image_size;
        let used_mel = l.frames * l.mel_frames_per_step;
        let mut frames = vec![0f32; b * frame_len];
        let mut mel = vec![0f32; b * l.n_mels * used_mel];
        let mut pres = vec![0f32; b * 2];
        for (k, (&i, p)) in indices.iter().zip(presence).enumerate() {
            pres[k * 2] = f32::from(p[0]);
            pres[k * 2 + 1] = f32::from(p[1]);
            if p[Modality::Video as usize] != 0 {
                let src = &self.data.frames[i * frame_len..(i + 1) * frame_len];
                for (d, &s) in frames[k * frame_len..(k + 1) * frame_len]
                    .iter_mut()
                    .zip(src)
                {
                    *d = f32::from(s) / 255.0 - 0.5;
                }
            }
            if p[Modality::Audio as usize] != 0 {
                let src =
                    &self.data.mel[i * l.n_mels * l.mel_frames..(i + 1) * l.n_mels * l.mel_frames];
                let dst = &mut mel[k * l.n_mels * used_mel..(k + 1) * l.n_mels * used_mel];
                for band in 0..l.n_mels {
                    let s = &src[band * l.mel_frames..band * l.mel_frames + used_mel];
                    for (d, &v) in dst[band * used_mel..(band + 1) * used_mel]
                        .iter_mut()
                        .zip(s)
                    {
                        *d = (v - norm.mel_mean) / norm.mel_std;
                    }
                }
            }
        }
        AvInput {
            frames: Tensor::from_data(
                TensorData::new(frames, [b, l.frames, 3, l.image_size, l.image_size]),
                device,
            ),
            mel: Tensor::from_data(TensorData::new(mel, [b, 1, l.n_mels, used_mel]), device),
            presence: Tensor::from_data(TensorData::new(pres, [b, 2]), device),
        }
    }

    /// Labels of `indices` as a `[B, 1]` float tensor (1 = fake).
    pub fn labels(&self, indices: &[usize], device: &Device) -> Tensor<2> {
        let v: Vec<f32> = indices
            .iter()
            .map(|&i| f32::from(self.data.labels[i]))
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
