//! Offline prediction over a file or a directory (`avfuse predict`): files in parallel
//! (rayon), one JSON line per file, failures as lines with an `error` field (never stopping
//! the batch), the output file written atomically.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use crate::engine::{Inference, MediaLimits, Prediction};
use crate::error::{Result, ServeError};

/// File name extensions taken from a directory (case-insensitive). A file named
/// explicitly is always taken.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "3gp", "avi", "flv", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "mts", "ogv", "ts",
    "webm", "wmv",
];

/// A file that could not be predicted (one JSON line).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    /// The file.
    pub path: String,
    /// Machine-readable kind ([`ServeError::code`]).
    pub error: String,
    /// One-line explanation.
    pub detail: String,
}

/// One output line: a prediction or a failure.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Line {
    /// The file was predicted.
    Ok(Box<Prediction>),
    /// It was not.
    Failed(Failure),
}

/// The result of [`predict_paths`].
#[derive(Clone, Debug, PartialEq)]
pub struct BatchReport {
    /// One line per input file, in input order.
    pub lines: Vec<Line>,
    /// Files predicted.
    pub ok: usize,
    /// Files that failed.
    pub failed: usize,
}

impl BatchReport {
    /// The lines as JSON Lines text.
    pub fn to_jsonl(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            // Serialising plain structs of numbers and strings cannot fail.
            s.push_str(&serde_json::to_string(l).unwrap_or_default());
            s.push('\n');
        }
        s
    }
}

fn has_video_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The files to predict: `input` itself if it is a file; else every file with a video
/// extension ([`VIDEO_EXTENSIONS`]) under the directory `input`, recursively, sorted.
pub fn list_inputs(input: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(input).map_err(|e| ServeError::Io {
        path: input.to_path_buf(),
        source: e,
    })?;
    if meta.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![input.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| ServeError::Io {
            path: dir.clone(),
            source: e,
        })?;
        for e in entries {
            let e = e.map_err(|e| ServeError::Io {
                path: dir.clone(),
                source: e,
            })?;
            let p = e.path();
            let ft = e.file_type().map_err(|err| ServeError::Io {
                path: p.clone(),
                source: err,
            })?;
            if ft.is_dir() {
                stack.push(p);
            } else if has_video_extension(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Predicts every file of `files` in parallel (rayon's pool), with a progress bar when
/// `progress` (drawn only on a terminal). Never stops at a failure.
pub fn predict_paths(
    engine: &Inference,
    files: &[PathBuf],
    limits: &MediaLimits,
    progress: bool,
) -> BatchReport {
    let pb = ProgressBar::with_draw_target(
        Some(files.len() as u64),
        if progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) =
        ProgressStyle::with_template("predict [{bar:30}] {pos}/{len} files ({per_sec}, eta {eta})")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    let lines: Vec<Line> = files
        .par_iter()
        .map(|f| {
            let name = f.display().to_string();
            let line = match engine.predict_file(f, &name, limits, None) {
                Ok(p) => Line::Ok(Box::new(p)),
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "prediction failed");
                    Line::Failed(Failure {
                        path: name,
                        error: e.code().into(),
                        detail: e.to_string(),
                    })
                }
            };
            pb.inc(1);
            line
        })
        .collect();
    pb.finish_and_clear();
    let ok = lines.iter().filter(|l| matches!(l, Line::Ok(_))).count();
    BatchReport {
        failed: lines.len() - ok,
        ok,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_video_files_recursively_sorted() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b/c")).unwrap();
        for f in ["z.MP4", "a.mkv", "b/c/x.mov", "notes.txt", "b/meta.json"] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let got: Vec<String> = list_inputs(d.path())
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(got, ["a.mkv", "b/c/x.mov", "z.MP4"]);
        // A file named explicitly is taken whatever its extension.
        let txt = d.path().join("notes.txt");
        assert_eq!(list_inputs(&txt).unwrap(), vec![txt]);
        let e = list_inputs(&d.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn failure_lines_have_path_error_and_detail() {
        let r = BatchReport {
            lines: vec![Line::Failed(Failure {
                path: "a.mp4".into(),
                error: "invalid_media".into(),
                detail: "a.mp4: bad".into(),
            })],
            ok: 0,
            failed: 1,
        };
        let v: serde_json::Value = serde_json::from_str(r.to_jsonl().trim()).unwrap();
        assert_eq!(v["path"], "a.mp4");
        assert_eq!(v["error"], "invalid_media");
        assert_eq!(v["detail"], "a.mp4: bad");
    }
}
