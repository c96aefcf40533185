//! Errors raised when a model configuration cannot be built.

/// A model configuration that cannot be turned into a network.
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
}

pub(crate) fn invalid(key: &str, value: impl std::fmt::Debug, expected: &str) -> ModelError {
    ModelError::InvalidConfig {
        key: key.to_string(),
        value: format!("{value:?}"),
        expected: expected.to_string(),
    }
}
