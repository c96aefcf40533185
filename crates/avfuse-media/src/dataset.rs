//! Finding the clips of a real-media dataset.
//!
//! Two layouts are read (design section 4):
//!
//! 1. **Directory tree**: `data_root/<split>/<clip_id>/` holding the video (`video.mp4`, or
//!    any file named `video.<ext>` FFmpeg reads) and `meta.json`:
//!
//!    ```json
//!    {"label": 1, "kind": "face_swap", "group": "speaker_17", "anything": "else"}
//!    ```
//!
//!    `label` (required) is 0 (real) or 1 (fake); `kind` (optional string) and `group`
//!    (optional string: a source video or identity id, for leakage-free splits) are kept;
//!    every other field is carried into the cache manifest's `details`.
//!
//! 2. **Manifest**: a JSONL file (one object per line) or a CSV file with a header, with
//!    the fields `path` (video file, relative to the manifest's directory or absolute),
//!    `label` (0/1), `split`, and optionally `clip_id` (default: the path without its
//!    extension, `/` replaced by `_`), `kind`, `group`.
//!
//! Clips come back sorted by `(split, clip_id)`, so every process sees the same order
//! (which `prepare`'s `shard i/N` relies on). Clip ids must be unique within a split.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::MediaError;

/// One clip of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipSource {
    /// Split name (`train`, `val`, `test`, ...).
    pub split: String,
    /// Clip id, unique within the split.
    pub clip_id: String,
    /// The video file.
    pub video: PathBuf,
    /// 0 real, 1 fake.
    pub label: u8,
    /// Free-text kind of manipulation (`real` when absent and label is 0, else `fake`).
    pub kind: String,
    /// Source-video / identity group, if known.
    pub group: Option<String>,
    /// Other metadata fields.
    pub details: serde_json::Value,
}

fn label_of(v: &serde_json::Value, file: &Path, line: Option<usize>) -> Result<u8, MediaError> {
    let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
    match v.as_u64() {
        Some(l @ (0 | 1)) => Ok(l as u8),
        _ => match v.as_str().map(str::trim) {
            Some("0") => Ok(0),
            Some("1") => Ok(1),
            _ => Err(MediaError::format(
                file,
                format!("{at}`label` must be 0 or 1, got {v}"),
            )),
        },
    }
}

fn default_kind(label: u8) -> String {
    if label == 0 { "real" } else { "fake" }.to_string()
}

/// Reads the directory tree `data_root/<split>/<clip_id>/{video.*, meta.json}`.
pub fn scan_tree(data_root: &Path) -> Result<Vec<ClipSource>, MediaError> {
    let mut out = Vec::new();
    let splits = fs::read_dir(data_root).map_err(|e| MediaError::io(data_root, e))?;
    for split in splits {
        let split = split.map_err(|e| MediaError::io(data_root, e))?;
        if !split.path().is_dir() {
            continue;
        }
        let split_name = split.file_name().to_string_lossy().to_string();
        if split_name.starts_with('.') {
            continue;
        }
        let sp = split.path();
        for clip in fs::read_dir(&sp).map_err(|e| MediaError::io(&sp, e))? {
            let clip = clip.map_err(|e| MediaError::io(&sp, e))?;
            let dir = clip.path();
            if !dir.is_dir() {
                continue;
            }
            let meta_path = dir.join("meta.json");
            let bytes = match fs::read(&meta_path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(dir = %dir.display(), "no meta.json; skipping the directory");
                    continue;
                }
                Err(e) => return Err(MediaError::io(&meta_path, e)),
            };
            let meta: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| MediaError::format(&meta_path, format!("invalid JSON: {e}")))?;
            let obj = meta
                .as_object()
                .ok_or_else(|| MediaError::format(&meta_path, "must be a JSON object"))?;
            let label = label_of(
                obj.get("label")
                    .ok_or_else(|| MediaError::format(&meta_path, "missing `label`"))?,
                &meta_path,
                None,
            )?;
            let video = find_video(&dir)?;
            let mut details = obj.clone();
            let kind = details
                .remove("kind")
                .and_then(|k| k.as_str().map(String::from))
                .unwrap_or_else(|| default_kind(label));
            let group = details
                .remove("group")
                .and_then(|g| g.as_str().map(String::from));
            details.remove("label");
            out.push(ClipSource {
                split: split_name.clone(),
                clip_id: clip.file_name().to_string_lossy().to_string(),
                video,
                label,
                kind,
                group,
                details: serde_json::Value::Object(details),
            });
        }
    }
    finish(out, data_root)
}

fn find_video(dir: &Path) -> Result<PathBuf, MediaError> {
    let mp4 = dir.join("video.mp4");
    if mp4.is_file() {
        return Ok(mp4);
    }
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| MediaError::io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_stem().is_some_and(|s| s == "video"))
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .ok_or_else(|| MediaError::format(dir, "no video file (`video.mp4` or `video.<ext>`)"))
}

#[derive(Deserialize)]
struct ManifestRow {
    path: String,
    label: serde_json::Value,
    split: String,
    #[serde(default)]
    clip_id: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

/// Reads a JSONL (`.jsonl`/`.json`) or CSV (any other extension) manifest.
pub fn read_manifest(manifest: &Path) -> Result<Vec<ClipSource>, MediaError> {
    let text = fs::read_to_string(manifest).map_err(|e| MediaError::io(manifest, e))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let is_json = manifest
        .extension()
        .is_some_and(|e| e == "jsonl" || e == "json");
    let mut rows: Vec<(usize, ManifestRow)> = Vec::new();
    if is_json {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: ManifestRow = serde_json::from_str(line)
                .map_err(|e| MediaError::format(manifest, format!("line {}: {e}", i + 1)))?;
            rows.push((i + 1, row));
        }
    } else {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, header) = lines
            .next()
            .ok_or_else(|| MediaError::format(manifest, "empty CSV manifest"))?;
        let cols: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
        for need in ["path", "label", "split"] {
            if !cols.iter().any(|c| c == need) {
                return Err(MediaError::format(
                    manifest,
                    format!("CSV header lacks the `{need}` column (has {cols:?})"),
                ));
            }
        }
        for (i, line) in lines {
            let vals: Vec<&str> = line.split(',').map(str::trim).collect();
            if vals.len() != cols.len() {
                return Err(MediaError::format(
                    manifest,
                    format!(
                        "line {}: {} fields, header has {} (quoted commas are not supported)",
                        i + 1,
                        vals.len(),
                        cols.len()
                    ),
                ));
            }
            let obj: serde_json::Map<String, serde_json::Value> = cols
                .iter()
                .zip(&vals)
                .filter(|(_, v)| !v.is_empty())
                .map(|(c, v)| (c.clone(), serde_json::Value::String((*v).to_string())))
                .collect();
            let row: ManifestRow = serde_json::from_value(serde_json::Value::Object(obj))
                .map_err(|e| MediaError::format(manifest, format!("line {}: {e}", i + 1)))?;
            rows.push((i + 1, row));
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for (line, r) in rows {
        let label = label_of(&r.label, manifest, Some(line))?;
        let video = if Path::new(&r.path).is_absolute() {
            PathBuf::from(&r.path)
        } else {
            base.join(&r.path)
        };
        let clip_id = r.clip_id.unwrap_or_else(|| {
            let p = Path::new(&r.path).with_extension("");
            p.to_string_lossy().replace(['/', '\\'], "_")
        });
        out.push(ClipSource {
            split: r.split,
            clip_id,
            video,
            label,
            kind: r.kind.unwrap_or_else(|| default_kind(label)),
            group: r.group,
            details: serde_json::to_value(r.rest).unwrap_or(serde_json::Value::Null),
        });
    }
    finish(out, manifest)
}

fn finish(mut out: Vec<ClipSource>, source: &Path) -> Result<Vec<ClipSource>, MediaError> {
    out.sort_by(|a, b| (&a.split, &a.clip_id).cmp(&(&b.split, &b.clip_id)));
    let mut seen = HashSet::new();
    for c in &out {
        if c.split.is_empty() || c.split.contains(['/', '\\']) || c.split.starts_with('.') {
            return Err(MediaError::format(
                source,
                format!("split name {:?} is not a plain name", c.split),
            ));
        }
        if !seen.insert((c.split.as_str(), c.clip_id.as_str())) {
            return Err(MediaError::format(
                source,
                format!(
                    "clip id {:?} appears twice in split {:?}",
                    c.clip_id, c.split
                ),
            ));
        }
    }
    Ok(out)
}

/// Reads `source`: a manifest file, or a directory tree.
pub fn scan(source: &Path) -> Result<Vec<ClipSource>, MediaError> {
    if source.is_file() {
        read_manifest(source)
    } else {
        scan_tree(source)
    }
}

/// The clips of part `i` of `n`: every `n`-th clip of each split starting at `i`
/// (round-robin within a split, so every part gets a similar mix). `i < n` is required.
/// The parts of `0..n` partition the list.
pub fn shard_part(clips: &[ClipSource], i: usize, n: usize) -> Result<Vec<ClipSource>, MediaError> {
    if n == 0 || i >= n {
        return Err(MediaError::Invalid(format!(
            "shard {i}/{n}: need 0 <= i < n"
        )));
    }
    let mut pos: BTreeMap<&str, usize> = BTreeMap::new();
    Ok(clips
        .iter()
        .filter(|c| {
            let k = pos.entry(c.split.as_str()).or_insert(0);
            let keep = *k % n == i;
            *k += 1;
            keep
        })
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(split: &str, id: &str) -> ClipSource {
        ClipSource {
            split: split.into(),
            clip_id: id.into(),
            video: PathBuf::from(format!("{id}.mp4")),
            label: 0,
            kind: "real".into(),
            group: None,
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn shard_parts_partition_each_split() {
        let clips: Vec<_> = (0..7)
            .map(|i| clip("train", &format!("c{i}")))
            .chain((0..3).map(|i| clip("val", &format!("v{i}"))))
            .collect();
        let n = 3;
        let parts: Vec<_> = (0..n).map(|i| shard_part(&clips, i, n).unwrap()).collect();
        let mut all: Vec<_> = parts.iter().flatten().cloned().collect();
        all.sort_by(|a, b| (&a.split, &a.clip_id).cmp(&(&b.split, &b.clip_id)));
        assert_eq!(all, clips);
        assert_eq!(parts[0].len(), 3 + 1);
        assert!(shard_part(&clips, 3, 3).is_err());
    }

    #[test]
    fn tree_and_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (split, id, label) in [("train", "b", 1), ("train", "a", 0), ("val", "z", 0)] {
            let d = root.join(split).join(id);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("video.mp4"), b"x").unwrap();
            fs::write(
                d.join("meta.json"),
                format!(r#"{{"label": {label}, "group": "g{id}", "extra": 5}}"#),
            )
            .unwrap();
        }
        let clips = scan(root).unwrap();
        let ids: Vec<_> = clips.iter().map(|c| c.clip_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "z"]);
        assert_eq!(clips[1].label, 1);
        assert_eq!(clips[1].kind, "fake");
        assert_eq!(clips[1].group.as_deref(), Some("gb"));
        assert_eq!(clips[1].details["extra"], 5);
        // Bad label names the file.
        fs::write(root.join("val/z/meta.json"), r#"{"label": 3}"#).unwrap();
        let e = scan(root).unwrap_err();
        assert!(e.to_string().contains("meta.json") && e.to_string().contains("label"));

        let jsonl = root.join("m.jsonl");
        fs::write(
            &jsonl,
            "{\"path\": \"x/a.mp4\", \"label\": 1, \"split\": \"test\"}\n",
        )
        .unwrap();
        let c = scan(&jsonl).unwrap();
        assert_eq!(c[0].clip_id, "x_a");
        assert_eq!(c[0].video, root.join("x/a.mp4"));
        let csv = root.join("m.csv");
        fs::write(&csv, "path,label,split,clip_id\n/abs/v.mp4,0,train,v1\n").unwrap();
        let c = scan(&csv).unwrap();
        assert_eq!((c[0].clip_id.as_str(), c[0].label), ("v1", 0));
        assert_eq!(c[0].video, PathBuf::from("/abs/v.mp4"));
        fs::write(&csv, "path,split\nv.mp4,train\n").unwrap();
        assert!(scan(&csv).unwrap_err().to_string().contains("label"));
    }
}
