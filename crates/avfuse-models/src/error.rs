//! Errors raised when a model configuration cannot be built or its weights cannot be loaded.

/// A model configuration that cannot be turned into a network, or a weight file that cannot be
/// loaded into one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// A configuration value outside its allowed range; `key` is the config path.
    #[error("{key} = {value}: {expected}")]
    InvalidConfig {
        /// Config key, e.g. `model.video.channels`.
        key: String,
        /// The offending value, rendered.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// The file extension names no weight format the loader reads.
    #[error(
        "{path}: unsupported weight file (expected a .safetensors file or a PyTorch .pth/.pt/.bin checkpoint)"
    )]
    UnsupportedWeightFormat {
        /// The weight file.
        path: String,
    },
    /// The weight file could not be opened or parsed (I/O error, corrupt file, unknown
    /// top-level key).
    #[error("cannot read weights from {path}: {message}")]
    WeightFile {
        /// The weight file.
        path: String,
        /// What the reader reported.
        message: String,
    },
    /// The file's state dict does not match the model: keys the model needs are missing, keys
    /// the model does not have are present, or shapes differ. Every list names the tensors by
    /// their PyTorch state-dict keys (`layer1.0.bn1.weight`, `fc.weight`, ...) and is sorted.
    #[error("{}", mismatch_message(path, missing, unexpected, shape_mismatches))]
    WeightMismatch {
        /// The weight file.
        path: String,
        /// Keys the model needs that the file lacks.
        missing: Vec<String>,
        /// Keys in the file that the model has no parameter for.
        unexpected: Vec<String>,
        /// Keys present on both sides with different shapes.
        shape_mismatches: Vec<ShapeMismatch>,
    },
    /// The keys and shapes matched but a tensor could not be applied (e.g. its data could not
    /// be decoded, or its dtype is not a float).
    #[error("applying weights from {path} failed: {message}")]
    WeightLoad {
        /// The weight file.
        path: String,
        /// What went wrong, per tensor.
        message: String,
    },
}

/// One tensor whose shape in a weight file differs from the model's (PyTorch layout on both
/// sides: a Linear weight is `[out, in]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// PyTorch state-dict key.
    pub key: String,
    /// Shape the model needs.
    pub expected: Vec<usize>,
    /// Shape in the file.
    pub found: Vec<usize>,
}

/// How many names of each list the error message shows (the fields hold them all).
const SHOWN: usize = 20;

fn name_list(names: &[String]) -> String {
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(", ... ({} more)", names.len() - SHOWN));
    }
    s
}

fn mismatch_message(
    path: &str,
    missing: &[String],
    unexpected: &[String],
    shapes: &[ShapeMismatch],
) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "{} missing key(s): {}",
            missing.len(),
            name_list(missing)
        ));
    }
    if !unexpected.is_empty() {
        parts.push(format!(
            "{} unexpected key(s): {}",
            unexpected.len(),
            name_list(unexpected)
        ));
    }
    if !shapes.is_empty() {
        let shown: Vec<String> = shapes
            .iter()
            .take(SHOWN)
            .map(|m| format!("{} (model {:?}, file {:?})", m.key, m.expected, m.found))
            .collect();
        let more = if shapes.len() > SHOWN {
            format!(", ... ({} more)", shapes.len() - SHOWN)
        } else {
            String::new()
        };
        parts.push(format!(
            "{} shape mismatch(es): {}{more}",
            shapes.len(),
            shown.join(", ")
        ));
    }
    format!(
        "weights in {path} do not match the model: {}",
        parts.join("; ")
    )
}

pub(crate) fn invalid(key: &str, value: impl std::fmt::Debug, expected: &str) -> ModelError {
    ModelError::InvalidConfig {
        key: key.to_string(),
        value: format!("{value:?}"),
        expected: expected.to_string(),
    }
}
