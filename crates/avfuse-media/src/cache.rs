//! The pre-extracted cache format, version 1.
//!
//! A split lives in one directory:
//!
//! - `shard-00000.safetensors`, `shard-00001.safetensors`, ...: each holds `N` clips as
//!   the tensors `frames` U8 `[N, T, 3, H, W]`, `mel` F32 `[N, n_mels, mel_frames]` (dB),
//!   `label` U8 `[N]`, `audio_present` U8 `[N]`, `video_present` U8 `[N]` (0/1), when the
//!   index's `audio_samples` is above 0 `audio` F32 `[N, audio_samples]` (the mono samples
//!   each mel was computed from, zeros for a clip without audio; caches written before it
//!   existed have none and read as `audio_samples: 0`), and the header metadata `{"clip_ids": "[\"<id>\", ...]"}` (exactly one key, so the bytes are
//!   deterministic);
//! - `manifest.jsonl`: one [`ManifestEntry`] per clip, in shard order;
//! - `index.json`: the [`CacheIndex`] (pretty JSON).
//!
//! Every file is written atomically ([`crate::io::atomic_write`]), shards first and the
//! manifest and index last, so an `index.json` only exists when all its shards do.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::MediaError;
use crate::io::{atomic_write, atomic_write_with};
use crate::mel::MelConfig;
use crate::synth::SynthConfig;

/// Value of [`CacheIndex::format`].
pub const CACHE_FORMAT: &str = "avfuse-cache";
/// Value of [`CacheIndex::version`] written and read by this build.
pub const CACHE_VERSION: u32 = 1;
/// File name of the index inside a split directory.
pub const INDEX_FILE: &str = "index.json";
/// File name of the manifest inside a split directory.
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// Metadata key of a shard's clip ids.
pub const CLIP_IDS_KEY: &str = "clip_ids";

/// File name of shard `i`: `shard-00000.safetensors`.
pub fn shard_file_name(i: usize) -> String {
    format!("shard-{i:05}.safetensors")
}

/// One shard of a split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name, relative to the split directory.
    pub file: String,
    /// Clips in the shard.
    pub clips: usize,
}

/// `index.json`: what a split holds and the shapes of its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    /// Always [`CACHE_FORMAT`].
    pub format: String,
    /// Format version, [`CACHE_VERSION`].
    pub version: u32,
    /// Split name (`train`, `val`, ...).
    pub split: String,
    /// Video frames per clip, `T`.
    pub frames: usize,
    /// Frame height = width in pixels.
    pub image_size: usize,
    /// Colour channels, always 3 (RGB).
    pub channels: usize,
    /// Mel bands per clip.
    pub n_mels: usize,
    /// Mel frames (columns) per clip.
    pub mel_frames: usize,
    /// Audio sample rate in Hz the mel was computed at.
    pub sample_rate: u32,
    /// Video frame rate in frames per second.
    pub fps: f32,
    /// The log-mel settings used.
    pub mel: MelConfig,
    /// Mono audio samples per clip stored beside the mel (`audio` tensor of each shard, at
    /// `sample_rate`, exactly the samples the mel was computed from); 0 when the cache holds
    /// no waveform (caches written before waveforms were stored).
    #[serde(default)]
    pub audio_samples: usize,
    /// Total clips over all shards.
    pub num_clips: usize,
    /// Shards in order.
    pub shards: Vec<ShardEntry>,
}

impl CacheIndex {
    /// The per-clip layout described by this index.
    pub fn layout(&self) -> CacheLayout {
        CacheLayout {
            frames: self.frames,
            image_size: self.image_size,
            n_mels: self.n_mels,
            mel_frames: self.mel_frames,
            sample_rate: self.sample_rate,
            fps: self.fps,
            mel: self.mel.clone(),
            audio_samples: self.audio_samples,
        }
    }

    /// Bytes of one clip's frames: `T * 3 * H * W`.
    pub fn frames_len(&self) -> usize {
        self.layout().frames_len()
    }

    /// Values of one clip's mel: `n_mels * mel_frames`.
    pub fn mel_len(&self) -> usize {
        self.n_mels * self.mel_frames
    }
}

/// One line of `manifest.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Clip id, `"<split>-000123"` for synthetic data.
    pub clip_id: String,
    /// Split name.
    pub split: String,
    /// 0 real, 1 fake.
    pub label: u8,
    /// Clip kind (`real`, `desync`, ...; free text for real data).
    pub kind: String,
    /// Generation seed (0 where not applicable).
    pub seed: u64,
    /// Shard number.
    pub shard: usize,
    /// Position within the shard.
    pub index_in_shard: usize,
    /// Whether the clip has audio.
    pub audio_present: bool,
    /// Whether the clip has video.
    pub video_present: bool,
    /// Free-form facts about the clip.
    pub details: serde_json::Value,
}

/// Per-clip tensor layout of a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheLayout {
    /// Video frames per clip, `T`.
    pub frames: usize,
    /// Frame height = width in pixels.
    pub image_size: usize,
    /// Mel bands.
    pub n_mels: usize,
    /// Mel frames (columns) per clip.
    pub mel_frames: usize,
    /// Audio sample rate in Hz.
    pub sample_rate: u32,
    /// Video frame rate in frames per second.
    pub fps: f32,
    /// Log-mel settings.
    pub mel: MelConfig,
    /// Mono audio samples stored per clip (the mel's input); 0 for no waveform.
    #[serde(default)]
    pub audio_samples: usize,
}

impl CacheLayout {
    /// The layout of clips made by [`crate::synth`] with `cfg`.
    pub fn from_synth(cfg: &SynthConfig) -> Self {
        Self {
            frames: cfg.frames,
            image_size: cfg.image_size,
            n_mels: cfg.mel.n_mels,
            mel_frames: cfg.mel_frames(),
            sample_rate: cfg.mel.sample_rate,
            fps: cfg.fps,
            mel: cfg.mel.clone(),
            audio_samples: cfg.audio_samples(),
        }
    }

    /// Bytes of one clip's frames: `T * 3 * H * W`.
    pub fn frames_len(&self) -> usize {
        self.frames * 3 * self.image_size * self.image_size
    }

    /// Values of one clip's mel: `n_mels * mel_frames`.
    pub fn mel_len(&self) -> usize {
        self.n_mels * self.mel_frames
    }

    /// Checks the layout is non-degenerate and consistent with `mel`.
    pub fn validate(&self) -> Result<(), MediaError> {
        self.mel.validate()?;
        let bad = |m: String| Err(MediaError::Invalid(format!("cache layout: {m}")));
        if self.frames == 0 || self.image_size == 0 || self.mel_frames == 0 {
            return bad(format!(
                "frames ({}), image_size ({}) and mel_frames ({}) must be > 0",
                self.frames, self.image_size, self.mel_frames
            ));
        }
        if self.n_mels != self.mel.n_mels {
            return bad(format!(
                "n_mels ({}) differs from mel.n_mels ({})",
                self.n_mels, self.mel.n_mels
            ));
        }
        if self.sample_rate != self.mel.sample_rate {
            return bad(format!(
                "sample_rate ({}) differs from mel.sample_rate ({})",
                self.sample_rate, self.mel.sample_rate
            ));
        }
        if !self.fps.is_finite() || self.fps <= 0.0 {
            return bad(format!("fps must be finite and > 0, got {}", self.fps));
        }
        if self.audio_samples > 0 && self.mel.n_frames(self.audio_samples) != self.mel_frames {
            return bad(format!(
                "{} audio samples give {} mel frames, not mel_frames ({})",
                self.audio_samples,
                self.mel.n_frames(self.audio_samples),
                self.mel_frames
            ));
        }
        Ok(())
    }
}

/// The tensors of one clip for [`ShardWriter::push_with_audio`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClipTensors<'a> {
    /// u8 `[T, 3, H, W]`.
    pub frames: &'a [u8],
    /// f32 dB `[n_mels, mel_frames]`.
    pub mel: &'a [f32],
    /// Mono audio, the layout's `audio_samples` samples (empty when it stores none).
    pub audio: &'a [f32],
}

/// Per-clip facts that go to the manifest only.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipMeta {
    /// Clip kind name.
    pub kind: String,
    /// Generation seed (0 where not applicable).
    pub seed: u64,
    /// Free-form facts.
    pub details: serde_json::Value,
}

/// Writes one split: buffers clips, writes a shard every `shard_size` clips, and the
/// manifest and index in [`ShardWriter::finish`].
///
/// Files are written atomically; `index.json` is written last. Creating a writer removes
/// any previous `index.json`, `manifest.jsonl` and `shard-*.safetensors` of the
/// directory first, so a stale index never describes new shards.
#[derive(Debug)]
pub struct ShardWriter {
    dir: PathBuf,
    split: String,
    layout: CacheLayout,
    shard_size: usize,
    ids: Vec<String>,
    frames: Vec<u8>,
    mel: Vec<u8>,
    audio: Vec<u8>,
    labels: Vec<u8>,
    audio_present: Vec<u8>,
    video_present: Vec<u8>,
    shards: Vec<ShardEntry>,
    manifest: Vec<ManifestEntry>,
    seen: HashSet<String>,
}

fn validate_name(what: &str, name: &str) -> Result<(), MediaError> {
    let ok = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(MediaError::Invalid(format!(
            "{what} {name:?} must be a non-empty plain name without path separators"
        )))
    }
}

impl ShardWriter {
    /// Starts writing split `split` into directory `dir` (created if missing; the files
    /// go directly into it), `shard_size` clips per shard.
    pub fn create(
        dir: &Path,
        split: &str,
        layout: CacheLayout,
        shard_size: usize,
    ) -> Result<Self, MediaError> {
        validate_name("split name", split)?;
        layout.validate()?;
        if shard_size == 0 {
            return Err(MediaError::Invalid("shard_size must be > 0, got 0".into()));
        }
        fs::create_dir_all(dir).map_err(|e| MediaError::io(dir, e))?;
        // The index goes first: from here on, the directory is not a complete split.
        for name in [INDEX_FILE, MANIFEST_FILE] {
            remove_if_exists(&dir.join(name))?;
        }
        let entries = fs::read_dir(dir).map_err(|e| MediaError::io(dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| MediaError::io(dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("shard-") && name.ends_with(".safetensors") {
                tracing::debug!(file = %entry.path().display(), "removing stale shard");
                remove_if_exists(&entry.path())?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            split: split.to_string(),
            layout,
            shard_size,
            ids: Vec::new(),
            frames: Vec::new(),
            mel: Vec::new(),
            audio: Vec::new(),
            labels: Vec::new(),
            audio_present: Vec::new(),
            video_present: Vec::new(),
            shards: Vec::new(),
            manifest: Vec::new(),
            seen: HashSet::new(),
        })
    }

    /// Clips pushed so far.
    pub fn num_clips(&self) -> usize {
        self.manifest.len()
    }

    /// Adds one clip: `frames` u8 `[T, 3, H, W]`, `mel` f32 dB `[n_mels, mel_frames]`, for a
    /// layout with no waveform (`audio_samples == 0`; see [`ShardWriter::push_with_audio`]).
    /// Writes a shard when `shard_size` clips are buffered.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        clip_id: &str,
        frames: &[u8],
        mel: &[f32],
        label: u8,
        audio_present: bool,
        video_present: bool,
        meta: ClipMeta,
    ) -> Result<(), MediaError> {
        self.push_with_audio(
            clip_id,
            ClipTensors {
                frames,
                mel,
                audio: &[],
            },
            label,
            audio_present,
            video_present,
            meta,
        )
    }

    /// [`ShardWriter::push`] with the clip's waveform: `tensors.audio` has the layout's
    /// `audio_samples` mono samples (zeros for a clip without audio), or is empty when the
    /// layout stores none.
    pub fn push_with_audio(
        &mut self,
        clip_id: &str,
        tensors: ClipTensors<'_>,
        label: u8,
        audio_present: bool,
        video_present: bool,
        meta: ClipMeta,
    ) -> Result<(), MediaError> {
        let ClipTensors { frames, mel, audio } = tensors;
        if audio.len() != self.layout.audio_samples {
            return Err(MediaError::Invalid(format!(
                "clip {clip_id}: audio has {} samples, the layout stores {}",
                audio.len(),
                self.layout.audio_samples
            )));
        }
        if clip_id.is_empty() {
            return Err(MediaError::Invalid("clip id must not be empty".into()));
        }
        if frames.len() != self.layout.frames_len() {
            return Err(MediaError::Invalid(format!(
                "clip {clip_id}: frames has {} bytes, expected {} = {} x 3 x {} x {}",
                frames.len(),
                self.layout.frames_len(),
                self.layout.frames,
                self.layout.image_size,
                self.layout.image_size
            )));
        }
        if mel.len() != self.layout.mel_len() {
            return Err(MediaError::Invalid(format!(
                "clip {clip_id}: mel has {} values, expected {} = {} x {}",
                mel.len(),
                self.layout.mel_len(),
                self.layout.n_mels,
                self.layout.mel_frames
            )));
        }
        if !self.seen.insert(clip_id.to_string()) {
            return Err(MediaError::Invalid(format!(
                "clip id {clip_id} pushed twice to split {}",
                self.split
            )));
        }
        self.manifest.push(ManifestEntry {
            clip_id: clip_id.to_string(),
            split: self.split.clone(),
            label,
            kind: meta.kind,
            seed: meta.seed,
            shard: self.shards.len(),
            index_in_shard: self.ids.len(),
            audio_present,
            video_present,
            details: meta.details,
        });
        self.ids.push(clip_id.to_string());
        self.frames.extend_from_slice(frames);
        self.mel.reserve(mel.len() * 4);
        for v in mel {
            self.mel.extend_from_slice(&v.to_le_bytes());
        }
        self.audio.reserve(audio.len() * 4);
        for v in audio {
            self.audio.extend_from_slice(&v.to_le_bytes());
        }
        self.labels.push(label);
        self.audio_present.push(u8::from(audio_present));
        self.video_present.push(u8::from(video_present));
        if self.ids.len() == self.shard_size {
            self.flush_shard()?;
        }
        Ok(())
    }

    fn flush_shard(&mut self) -> Result<(), MediaError> {
        let n = self.ids.len();
        if n == 0 {
            return Ok(());
        }
        let file = shard_file_name(self.shards.len());
        let path = self.dir.join(&file);
        let l = &self.layout;
        let ser_err = |e: safetensors::SafeTensorError| {
            MediaError::format(&path, format!("cannot serialise shard: {e}"))
        };
        let frames = TensorView::new(
            Dtype::U8,
            vec![n, l.frames, 3, l.image_size, l.image_size],
            &self.frames,
        )
        .map_err(ser_err)?;
        let mel = TensorView::new(Dtype::F32, vec![n, l.n_mels, l.mel_frames], &self.mel)
            .map_err(ser_err)?;
        let label = TensorView::new(Dtype::U8, vec![n], &self.labels).map_err(ser_err)?;
        let ap = TensorView::new(Dtype::U8, vec![n], &self.audio_present).map_err(ser_err)?;
        let vp = TensorView::new(Dtype::U8, vec![n], &self.video_present).map_err(ser_err)?;
        let ids = serde_json::to_string(&self.ids)
            .map_err(|e| MediaError::format(&path, format!("cannot serialise clip ids: {e}")))?;
        let metadata = std::collections::HashMap::from([(CLIP_IDS_KEY.to_string(), ids)]);
        let mut tensors = vec![
            ("frames", frames),
            ("mel", mel),
            ("label", label),
            ("audio_present", ap),
            ("video_present", vp),
        ];
        if l.audio_samples > 0 {
            tensors.push((
                "audio",
                TensorView::new(Dtype::F32, vec![n, l.audio_samples], &self.audio)
                    .map_err(ser_err)?,
            ));
        }
        let bytes = safetensors::serialize(tensors, Some(metadata)).map_err(ser_err)?;
        atomic_write(&path, &bytes)?;
        tracing::debug!(file = %path.display(), clips = n, bytes = bytes.len(), "wrote shard");
        self.shards.push(ShardEntry { file, clips: n });
        self.ids.clear();
        self.frames.clear();
        self.mel.clear();
        self.audio.clear();
        self.labels.clear();
        self.audio_present.clear();
        self.video_present.clear();
        Ok(())
    }

    /// Writes the last (partial) shard, then `manifest.jsonl`, then `index.json`, and
    /// returns the index.
    pub fn finish(mut self) -> Result<CacheIndex, MediaError> {
        self.flush_shard()?;
        let manifest_path = self.dir.join(MANIFEST_FILE);
        atomic_write_with(&manifest_path, |w| {
            for e in &self.manifest {
                serde_json::to_writer(&mut *w, e)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })?;
        let l = self.layout;
        let index = CacheIndex {
            format: CACHE_FORMAT.to_string(),
            version: CACHE_VERSION,
            split: self.split,
            frames: l.frames,
            image_size: l.image_size,
            channels: 3,
            n_mels: l.n_mels,
            mel_frames: l.mel_frames,
            sample_rate: l.sample_rate,
            fps: l.fps,
            mel: l.mel,
            audio_samples: l.audio_samples,
            num_clips: self.manifest.len(),
            shards: self.shards,
        };
        let index_path = self.dir.join(INDEX_FILE);
        let mut json = serde_json::to_vec_pretty(&index)
            .map_err(|e| MediaError::format(&index_path, format!("cannot serialise: {e}")))?;
        json.push(b'\n');
        atomic_write(&index_path, &json)?;
        tracing::info!(
            dir = %self.dir.display(),
            split = %index.split,
            clips = index.num_clips,
            shards = index.shards.len(),
            "cache split complete"
        );
        Ok(index)
    }
}

fn remove_if_exists(path: &Path) -> Result<(), MediaError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(MediaError::io(path, e)),
    }
}

/// Reads and validates `dir/index.json`.
pub fn read_index(dir: &Path) -> Result<CacheIndex, MediaError> {
    let path = dir.join(INDEX_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MediaError::io(
                &path,
                std::io::Error::new(
                    e.kind(),
                    "no cache index: this is not a complete cache split; create one with \
                     `avfuse synth` (synthetic data) or `avfuse prepare` (real media)",
                ),
            ));
        }
        Err(e) => return Err(MediaError::io(&path, e)),
    };
    let index: CacheIndex = serde_json::from_slice(&bytes)
        .map_err(|e| MediaError::format(&path, format!("invalid cache index: {e}")))?;
    let bad = |d: String| Err(MediaError::format(&path, d));
    if index.format != CACHE_FORMAT {
        return bad(format!(
            "format is {:?}, expected {CACHE_FORMAT:?}",
            index.format
        ));
    }
    if index.version != CACHE_VERSION {
        return bad(format!(
            "cache version {} is not supported (this build reads version {CACHE_VERSION}); \
             regenerate the cache",
            index.version
        ));
    }
    if index.channels != 3 {
        return bad(format!("channels is {}, expected 3", index.channels));
    }
    if let Err(e) = index.layout().validate() {
        return bad(e.to_string());
    }
    let total: usize = index.shards.iter().map(|s| s.clips).sum();
    if total != index.num_clips {
        return bad(format!(
            "num_clips is {} but the shards hold {total} clips",
            index.num_clips
        ));
    }
    for s in &index.shards {
        if let Err(e) = validate_name("shard file", &s.file) {
            return bad(e.to_string());
        }
    }
    Ok(index)
}

/// Reads `dir/manifest.jsonl` (no cross-checks; see [`read_split`]).
pub fn read_manifest(dir: &Path) -> Result<Vec<ManifestEntry>, MediaError> {
    let path = dir.join(MANIFEST_FILE);
    let f = fs::File::open(&path).map_err(|e| MediaError::io(&path, e))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| MediaError::io(&path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let e: ManifestEntry = serde_json::from_str(&line)
            .map_err(|e| MediaError::format(&path, format!("line {}: {e}", i + 1)))?;
        out.push(e);
    }
    Ok(out)
}

/// The clips of one shard, concatenated in shard order.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardData {
    /// Clip ids from the shard metadata.
    pub clip_ids: Vec<String>,
    /// u8 `[N, T, 3, H, W]`.
    pub frames: Vec<u8>,
    /// f32 dB `[N, n_mels, mel_frames]`.
    pub mel: Vec<f32>,
    /// f32 mono audio `[N, audio_samples]`; empty when the cache stores no waveform.
    pub audio: Vec<f32>,
    /// `[N]`, 0 real / 1 fake.
    pub labels: Vec<u8>,
    /// `[N]`, 0/1.
    pub audio_present: Vec<u8>,
    /// `[N]`, 0/1.
    pub video_present: Vec<u8>,
}

fn tensor<'a>(
    st: &'a SafeTensors<'a>,
    path: &Path,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<&'a [u8], MediaError> {
    let t = st
        .tensor(name)
        .map_err(|e| MediaError::format(path, format!("tensor `{name}`: {e}")))?;
    if t.dtype() != dtype {
        return Err(MediaError::format(
            path,
            format!(
                "tensor `{name}` has dtype {:?}, expected {dtype:?}",
                t.dtype()
            ),
        ));
    }
    if t.shape() != shape {
        return Err(MediaError::format(
            path,
            format!(
                "tensor `{name}` has shape {:?}, expected {shape:?} (from index.json)",
                t.shape()
            ),
        ));
    }
    Ok(t.data())
}

/// Reads and validates shard number `shard` of the split in `dir` described by `index`:
/// dtypes and shapes against the index, clip ids in the metadata, 0/1 presence flags.
pub fn read_shard(dir: &Path, index: &CacheIndex, shard: usize) -> Result<ShardData, MediaError> {
    let entry = index.shards.get(shard).ok_or_else(|| {
        MediaError::Invalid(format!(
            "shard {shard} out of range: {} has {} shards",
            dir.join(INDEX_FILE).display(),
            index.shards.len()
        ))
    })?;
    let path = dir.join(&entry.file);
    let bytes = fs::read(&path).map_err(|e| MediaError::io(&path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        MediaError::format(
            &path,
            format!("not a valid safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    let n = entry.clips;
    let (t, s) = (index.frames, index.image_size);
    let frames = tensor(&st, &path, "frames", Dtype::U8, &[n, t, 3, s, s])?.to_vec();
    let mel = tensor(
        &st,
        &path,
        "mel",
        Dtype::F32,
        &[n, index.n_mels, index.mel_frames],
    )?
    .chunks_exact(4)
    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    .collect();
    let audio = if index.audio_samples > 0 {
        tensor(&st, &path, "audio", Dtype::F32, &[n, index.audio_samples])?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        Vec::new()
    };
    let labels = tensor(&st, &path, "label", Dtype::U8, &[n])?.to_vec();
    let audio_present = tensor(&st, &path, "audio_present", Dtype::U8, &[n])?.to_vec();
    let video_present = tensor(&st, &path, "video_present", Dtype::U8, &[n])?.to_vec();
    for (name, v) in [
        ("audio_present", &audio_present),
        ("video_present", &video_present),
    ] {
        if let Some(x) = v.iter().find(|&&x| x > 1) {
            return Err(MediaError::format(
                &path,
                format!("tensor `{name}` holds {x}, expected 0 or 1"),
            ));
        }
    }
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| MediaError::format(&path, format!("invalid header: {e}")))?;
    let ids_json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(CLIP_IDS_KEY))
        .ok_or_else(|| MediaError::format(&path, format!("header has no `{CLIP_IDS_KEY}`")))?;
    let clip_ids: Vec<String> = serde_json::from_str(ids_json).map_err(|e| {
        MediaError::format(
            &path,
            format!("`{CLIP_IDS_KEY}` is not a JSON string array: {e}"),
        )
    })?;
    if clip_ids.len() != n {
        return Err(MediaError::format(
            &path,
            format!(
                "`{CLIP_IDS_KEY}` lists {} ids, expected {n}",
                clip_ids.len()
            ),
        ));
    }
    Ok(ShardData {
        clip_ids,
        frames,
        mel,
        audio,
        labels,
        audio_present,
        video_present,
    })
}

/// A whole split in memory, clips in manifest order.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitData {
    /// The split's index.
    pub index: CacheIndex,
    /// One entry per clip.
    pub clips: Vec<ManifestEntry>,
    /// u8 `[num_clips, T, 3, H, W]`.
    pub frames: Vec<u8>,
    /// f32 dB `[num_clips, n_mels, mel_frames]`.
    pub mel: Vec<f32>,
    /// f32 mono audio `[num_clips, audio_samples]` (the index's `audio_samples`), the
    /// samples each mel was computed from; empty when the cache stores no waveform.
    pub audio: Vec<f32>,
    /// `[num_clips]`, 0 real / 1 fake.
    pub labels: Vec<u8>,
    /// `[num_clips]`, 0/1.
    pub audio_present: Vec<u8>,
    /// `[num_clips]`, 0/1.
    pub video_present: Vec<u8>,
}

/// Reads a whole split from `dir` and cross-checks index, manifest and shards (counts,
/// order, clip ids, labels, presence flags, shapes and dtypes).
pub fn read_split(dir: &Path) -> Result<SplitData, MediaError> {
    let index = read_index(dir)?;
    let clips = read_manifest(dir)?;
    let mpath = dir.join(MANIFEST_FILE);
    if clips.len() != index.num_clips {
        return Err(MediaError::format(
            &mpath,
            format!(
                "manifest has {} entries but {} says num_clips = {}",
                clips.len(),
                dir.join(INDEX_FILE).display(),
                index.num_clips
            ),
        ));
    }
    let mut frames = Vec::with_capacity(index.num_clips * index.frames_len());
    let mut mel = Vec::with_capacity(index.num_clips * index.mel_len());
    let mut audio = Vec::with_capacity(index.num_clips * index.audio_samples);
    let mut labels = Vec::with_capacity(index.num_clips);
    let mut audio_present = Vec::with_capacity(index.num_clips);
    let mut video_present = Vec::with_capacity(index.num_clips);
    let mut k = 0;
    for (s, entry) in index.shards.iter().enumerate() {
        let data = read_shard(dir, &index, s)?;
        let spath = dir.join(&entry.file);
        for i in 0..entry.clips {
            let m = &clips[k];
            let line = k + 1;
            if m.shard != s || m.index_in_shard != i {
                return Err(MediaError::format(
                    &mpath,
                    format!(
                        "line {line} ({}): at shard {} index {}, expected shard {s} index {i}",
                        m.clip_id, m.shard, m.index_in_shard
                    ),
                ));
            }
            if m.split != index.split {
                return Err(MediaError::format(
                    &mpath,
                    format!(
                        "line {line} ({}): split {:?}, index says {:?}",
                        m.clip_id, m.split, index.split
                    ),
                ));
            }
            if data.clip_ids[i] != m.clip_id {
                return Err(MediaError::format(
                    &spath,
                    format!(
                        "clip {i} is {:?} but manifest line {line} says {:?}",
                        data.clip_ids[i], m.clip_id
                    ),
                ));
            }
            if data.labels[i] != m.label
                || data.audio_present[i] != u8::from(m.audio_present)
                || data.video_present[i] != u8::from(m.video_present)
            {
                return Err(MediaError::format(
                    &spath,
                    format!(
                        "clip {} label/presence ({}, {}, {}) disagree with manifest line {line}",
                        m.clip_id, data.labels[i], data.audio_present[i], data.video_present[i]
                    ),
                ));
            }
            k += 1;
        }
        frames.extend_from_slice(&data.frames);
        mel.extend_from_slice(&data.mel);
        audio.extend_from_slice(&data.audio);
        labels.extend_from_slice(&data.labels);
        audio_present.extend_from_slice(&data.audio_present);
        video_present.extend_from_slice(&data.video_present);
    }
    tracing::debug!(dir = %dir.display(), clips = k, "read cache split");
    Ok(SplitData {
        index,
        clips,
        frames,
        mel,
        audio,
        labels,
        audio_present,
        video_present,
    })
}
