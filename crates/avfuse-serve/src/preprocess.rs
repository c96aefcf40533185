//! The preprocessing that turns a video file into model input: which settings of
//! [`avfuse_media::prepare::ClipPipeline`] reproduce a checkpoint's training data.
//!
//! A checkpoint records the *shape* of its training clips ([`Layout`]: `T` frames of
//! `S x S` pixels, `n_mels x mel_frames` log-mel) but not every option `avfuse prepare` was
//! run with. Two sources, in order of preference:
//!
//! 1. `prepare.json`, which `avfuse prepare` writes into every split directory it makes
//!    (its `options` object), given explicitly (`--preprocessing FILE`): the exact
//!    training settings (sampling stride, fps, face settings, mel settings, decode size,
//!    leading-silence trimming);
//! 2. otherwise the defaults of `avfuse prepare` fitted to the layout: `T = layout.frames`,
//!    crop side `layout.image_size`, consecutive frames from the start (stride 1), native
//!    decode size, face detection every 4th frame with margin 1.3, librosa-style log-mel
//!    with `n_mels = layout.n_mels` (16 kHz, n_fft 512, win 400, hop 160, fmax 8 kHz,
//!    top_db 80), and a nominal fps of 25, or, when 25 does not give the layout's mel frame
//!    count, the fps that does (`T * 16000 / (160 * (mel_frames - 1))`).
//!
//! Either way the settings must give exactly the layout's shapes ([`Preprocessing::check`]),
//! else loading fails with a message naming the mismatch. A checkpoint trained on synthetic
//! data (`avfuse synth`, e.g. the quickstart's 16 frames of 64 px) gets the same treatment:
//! its layout is producible from any video (16 face crops of 64 px), so it serves, but its
//! predictions on real faces mean nothing, since it never saw one.

use std::path::Path;

use avfuse_media::faces::FaceConfig;
use avfuse_media::mel::MelConfig;
use avfuse_media::sampling::Sampling;
use avfuse_train::data::Layout;
use serde::{Deserialize, Serialize};

use crate::error::{Result, ServeError};

/// The per-clip preprocessing settings (the output-shaping options of `avfuse prepare`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Frames per window, `T`.
    pub frames_per_clip: usize,
    /// How frames are chosen. `start_at` (consecutive frames, every `stride`-th) makes a
    /// clip into consecutive windows of `T * stride` frames; `uniform` and `random` take one
    /// window spread over the whole clip.
    pub sampling: Sampling,
    /// Nominal frame rate in frames per second: sizes the audio of a window
    /// (`T * stride / fps` seconds).
    pub fps: f32,
    /// Face crop side in pixels.
    pub crop_size: usize,
    /// Face detection and crop settings.
    pub faces: FaceConfig,
    /// Log-mel settings.
    pub mel: MelConfig,
    /// Decode frames scaled so that the longer side is at most this (`None`: native size).
    #[serde(default)]
    pub max_side: Option<u32>,
    /// `Some(threshold_db)`: windows start after the clip's leading silence.
    #[serde(default)]
    pub trim_leading_silence: Option<f32>,
}

/// Where the preprocessing settings came from (reported by `GET /v1/model`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PreprocessingSource {
    /// A `prepare.json` file (its path).
    PrepareJson(String),
    /// `avfuse prepare`'s defaults fitted to the checkpoint's layout.
    LayoutDefaults,
}

impl Preprocessing {
    /// `avfuse prepare`'s defaults fitted to `layout` (see the module docs).
    pub fn for_layout(layout: &Layout) -> Self {
        let mel = MelConfig {
            n_mels: layout.n_mels,
            ..MelConfig::default()
        };
        let mut p = Self {
            frames_per_clip: layout.frames,
            sampling: Sampling::StartAt {
                start_s: 0.0,
                count: layout.frames,
                stride: 1,
            },
            fps: 25.0,
            crop_size: layout.image_size,
            faces: FaceConfig {
                crop_size: layout.image_size,
                ..FaceConfig::default()
            },
            mel,
            max_side: None,
            trim_leading_silence: None,
        };
        if p.mel_frames() != layout.mel_frames && layout.mel_frames > 1 {
            // The fps whose audio window gives exactly `mel_frames` frames.
            let hop = p.mel.hop_length as f64;
            let fps = layout.frames as f64 * f64::from(p.mel.sample_rate)
                / (hop * (layout.mel_frames - 1) as f64);
            if fps.is_finite() && fps > 0.0 {
                p.fps = fps as f32;
            }
        }
        p
    }

    /// Reads the `options` of a `prepare.json` (as `avfuse prepare` writes it into each
    /// split directory), or a bare options object with the same fields.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ServeError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ServeError::Config(format!("{}: not JSON: {e}", path.display())))?;
        let opts = v.get("options").cloned().unwrap_or(v);
        let mut p: Self = serde_json::from_value(opts).map_err(|e| {
            ServeError::Config(format!(
                "{}: not a prepare.json (expected the options of `avfuse prepare`): {e}",
                path.display()
            ))
        })?;
        p.sampling = p.sampling.with_count(p.frames_per_clip);
        p.faces.crop_size = p.crop_size;
        Ok(p)
    }

    /// Step between taken frames (1 unless `start_at` with a stride).
    pub fn stride(&self) -> usize {
        match self.sampling {
            Sampling::StartAt { stride, .. } => stride.max(1),
            _ => 1,
        }
    }

    /// Audio samples per window: `round(T * stride / fps * sample_rate)`.
    pub fn audio_samples(&self) -> usize {
        let s = self.frames_per_clip as f64 * self.stride() as f64 / f64::from(self.fps);
        (s * f64::from(self.mel.sample_rate)).round() as usize
    }

    /// Mel frames per window (`1 + audio_samples / hop`).
    pub fn mel_frames(&self) -> usize {
        self.mel.n_frames(self.audio_samples())
    }

    /// Error unless these settings produce clips of exactly `layout`'s shape and are valid.
    pub fn check(&self, layout: &Layout) -> std::result::Result<(), String> {
        self.mel.validate().map_err(|e| e.to_string())?;
        self.faces.validate().map_err(|e| e.to_string())?;
        self.sampling.validate().map_err(|e| e.to_string())?;
        if !(self.fps.is_finite() && self.fps > 0.0) {
            return Err(format!("preprocessing fps must be > 0, got {}", self.fps));
        }
        let got = (
            self.frames_per_clip,
            self.crop_size,
            self.mel.n_mels,
            self.mel_frames(),
        );
        let want = (
            layout.frames,
            layout.image_size,
            layout.n_mels,
            layout.mel_frames,
        );
        if got != want {
            return Err(format!(
                "the model was trained on clips of {} frames of {}x{} px with a {}x{} log-mel, \
                 but the preprocessing gives {} frames of {}x{} px with a {}x{} log-mel; pass the \
                 training data's prepare.json (--preprocessing)",
                want.0, want.1, want.1, want.2, want.3, got.0, got.1, got.1, got.2, got.3
            ));
        }
        if layout.frames * layout.mel_frames_per_step > layout.mel_frames {
            return Err(format!(
                "layout uses {} mel frames per video frame but has only {} mel frames for {} \
                 frames",
                layout.mel_frames_per_step, layout.mel_frames, layout.frames
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(frames: usize, image_size: usize, mel_frames: usize) -> Layout {
        Layout {
            frames,
            image_size,
            n_mels: 64,
            mel_frames,
            mel_frames_per_step: (mel_frames - 1) / frames,
        }
    }

    #[test]
    fn defaults_reproduce_the_quickstart_and_prepare_layouts() {
        // Quickstart synth layout: 16 frames of 64 px, 65 mel frames at 25 fps.
        let l = layout(16, 64, 65);
        let p = Preprocessing::for_layout(&l);
        assert_eq!(p.fps, 25.0);
        assert_eq!(p.mel_frames(), 65);
        p.check(&l).unwrap();
        // `avfuse prepare` defaults: 32 frames, 224 px.
        let l = layout(32, 224, 129);
        Preprocessing::for_layout(&l).check(&l).unwrap();
        // A layout made at 12.5 fps (8 mel frames per video frame): the fps is derived.
        let l = layout(16, 64, 129);
        let p = Preprocessing::for_layout(&l);
        assert_eq!(p.fps, 12.5);
        p.check(&l).unwrap();
    }

    #[test]
    fn a_mismatch_names_both_shapes() {
        let l = layout(16, 64, 65);
        let mut p = Preprocessing::for_layout(&l);
        p.crop_size = 96;
        let e = p.check(&l).unwrap_err();
        assert!(e.contains("16 frames of 64x64"), "{e}");
        assert!(e.contains("16 frames of 96x96"), "{e}");
    }

    #[test]
    fn reads_the_options_of_a_prepare_json() {
        let dir = tempfile::tempdir().unwrap();
        let l = layout(8, 32, 33);
        let mut p = Preprocessing::for_layout(&l);
        p.sampling = Sampling::StartAt {
            start_s: 0.0,
            count: 8,
            stride: 1,
        };
        p.faces.every = 2;
        let stamp = serde_json::json!({
            "options": {
                "frames_per_clip": 8,
                "sampling": p.sampling,
                "fps": 25.0,
                "crop_size": 32,
                "faces": p.faces,
                "mel": p.mel,
                "max_side": null,
                "shard_size": 32,
                "trim_leading_silence": null
            },
            "clip_ids": ["a", "b"]
        });
        let f = dir.path().join("prepare.json");
        std::fs::write(&f, serde_json::to_vec(&stamp).unwrap()).unwrap();
        let back = Preprocessing::from_file(&f).unwrap();
        assert_eq!(back, p);
        back.check(&l).unwrap();
        std::fs::write(&f, b"{\"frames_per_clip\": 8}").unwrap();
        let e = Preprocessing::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("prepare.json"), "{e}");
    }
}
