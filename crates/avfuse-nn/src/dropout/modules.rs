//! The dropout family as Burn modules (`Config` + `init`), following Burn's `Dropout`:
//! a layer acts only when its `training` flag is on **and** the input's device has
//! autodiff (`model.valid()` and inference devices make every layer the identity).

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Flag, Module, ModuleDisplay, Param};
use burn::tensor::Tensor;

use super::functional::{TimeAxis, Variant, dropout_family};
use super::{DropoutError, check_probability, next_seed};

fn active(training: &Param<Flag>, device: &burn::tensor::Device) -> bool {
    training.is_enabled() && device.is_autodiff()
}

/// Apply `variant` when the layer is active, else only validate the rank.
fn run<const D: usize>(
    x: Tensor<D>,
    variant: Variant,
    prob: f64,
    training: &Param<Flag>,
) -> Result<Tensor<D>, DropoutError> {
    let on = active(training, &x.device());
    if !on || prob == 0.0 {
        // Same rank check as in training, so a wrong shape fails in eval too.
        variant.layout(&x.dims())?;
        return Ok(x);
    }
    dropout_family(x, variant, prob, true, next_seed())
}

/// Unwrap the result of a variant that accepts every input of its static rank (element-wise
/// variants: any rank; drop path: rank >= 1, which every `Tensor<D>` has; locked dropout:
/// `Tensor<3>`), built from a config whose `prob` was checked at `init`: no error can occur.
fn infallible<const D: usize>(r: Result<Tensor<D>, DropoutError>) -> Tensor<D> {
    match r {
        Ok(y) => y,
        Err(e) => unreachable!("dropout invariant broken: {e}"),
    }
}

macro_rules! dropout_layer {
    ($(#[$doc:meta])* $name:ident, $config:ident) => {
        #[doc = concat!("Configuration of [`", stringify!($name), "`].")]
        #[derive(Config, Debug)]
        pub struct $config {
            /// Probability of dropping, in `[0, 1]`.
            pub prob: f64,
        }

        impl $config {
            #[doc = concat!("Build the layer; `prob` outside `[0, 1]` is an error (PyTorch's wording).")]
            pub fn init(&self) -> Result<$name, DropoutError> {
                Ok($name {
                    prob: check_probability(self.prob)?,
                    training: Param::from_bool(true),
                })
            }
        }

        $(#[$doc])*
        #[derive(Module, Debug)]
        #[module(custom_display)]
        pub struct $name {
            /// Probability of dropping.
            pub prob: f64,
            /// Whether to act as in training (see the module docs).
            pub training: Param<Flag>,
        }

        impl ModuleDisplay for $name {
            fn custom_settings(&self) -> Option<DisplaySettings> {
                DisplaySettings::new()
                    .with_new_line_after_attribute(false)
                    .optional()
            }

            fn custom_content(&self, content: Content) -> Option<Content> {
                content.add("prob", &self.prob).optional()
            }
        }
    };
}

dropout_layer!(
    /// Element-wise inverted dropout, any shape: `x * m / (1-p)`.
    Dropout,
    DropoutConfig
);
dropout_layer!(
    /// Channel dropout for `[N, C, L]` or unbatched `[C, L]` inputs.
    Dropout1d,
    Dropout1dConfig
);
dropout_layer!(
    /// Channel dropout for `[N, C, H, W]` inputs.
    Dropout2d,
    Dropout2dConfig
);
dropout_layer!(
    /// Channel dropout for `[N, C, D, H, W]` or unbatched `[C, D, H, W]` inputs.
    Dropout3d,
    Dropout3dConfig
);
dropout_layer!(
    /// Alpha dropout, any shape (for SELU networks).
    AlphaDropout,
    AlphaDropoutConfig
);
dropout_layer!(
    /// Alpha dropout with one mask per `(n, c)` channel of `[N, C, ...]`.
    FeatureAlphaDropout,
    FeatureAlphaDropoutConfig
);

impl Dropout {
    /// `[...]` -> `[...]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        // Element-wise dropout accepts every rank, so the only error (p) was caught at init.
        infallible(run(x, Variant::Dropout, self.prob, &self.training))
    }
}

impl Dropout1d {
    /// `[N, C, L]` or `[C, L]` -> same shape; other ranks are an error.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, DropoutError> {
        run(x, Variant::Dropout1d, self.prob, &self.training)
    }
}

impl Dropout2d {
    /// `[N, C, H, W]` -> same shape; other ranks are an error.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, DropoutError> {
        run(x, Variant::Dropout2d, self.prob, &self.training)
    }
}

impl Dropout3d {
    /// `[N, C, D, H, W]` or `[C, D, H, W]` -> same shape; other ranks are an error.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, DropoutError> {
        run(x, Variant::Dropout3d, self.prob, &self.training)
    }
}

impl AlphaDropout {
    /// `[...]` -> `[...]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        infallible(run(x, Variant::Alpha, self.prob, &self.training))
    }
}

impl FeatureAlphaDropout {
    /// `[N, C, ...]` (rank >= 2) -> same shape.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, DropoutError> {
        run(x, Variant::FeatureAlpha, self.prob, &self.training)
    }
}

/// Configuration of [`DropPath`].
#[derive(Config, Debug)]
pub struct DropPathConfig {
    /// Probability of dropping a sample's whole residual branch, in `[0, 1]`.
    pub prob: f64,
    /// Divide kept samples by `1 - prob` (timm's default).
    #[config(default = true)]
    pub scale_by_keep: bool,
}

impl DropPathConfig {
    /// Build the layer; `prob` outside `[0, 1]` is an error.
    pub fn init(&self) -> Result<DropPath, DropoutError> {
        Ok(DropPath {
            prob: check_probability(self.prob)?,
            scale_by_keep: self.scale_by_keep,
            training: Param::from_bool(true),
        })
    }
}

/// Stochastic depth (timm's `DropPath`): `[B, ...]`, one keep/drop decision per sample.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct DropPath {
    /// Probability of dropping.
    pub prob: f64,
    /// Divide kept samples by `1 - prob`.
    pub scale_by_keep: bool,
    /// Whether to act as in training.
    pub training: Param<Flag>,
}

impl DropPath {
    /// `[B, ...]` -> same shape.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let variant = Variant::DropPath {
            scale_by_keep: self.scale_by_keep,
        };
        infallible(run(x, variant, self.prob, &self.training))
    }
}

impl ModuleDisplay for DropPath {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("prob", &self.prob)
            .add("scale_by_keep", &self.scale_by_keep)
            .optional()
    }
}

/// Configuration of [`LockedDropout`].
#[derive(Config, Debug)]
pub struct LockedDropoutConfig {
    /// Probability of dropping, in `[0, 1]`.
    pub prob: f64,
    /// `true`: inputs are `[T, B, H]`; `false`: `[B, T, H]`.
    #[config(default = false)]
    pub time_major: bool,
}

impl LockedDropoutConfig {
    /// Build the layer; `prob` outside `[0, 1]` is an error.
    pub fn init(&self) -> Result<LockedDropout, DropoutError> {
        Ok(LockedDropout {
            prob: check_probability(self.prob)?,
            time_major: self.time_major,
            training: Param::from_bool(true),
        })
    }
}

/// Locked (variational) dropout: one `[B, H]` mask shared by every time step.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct LockedDropout {
    /// Probability of dropping.
    pub prob: f64,
    /// `true`: `[T, B, H]`; `false`: `[B, T, H]`.
    pub time_major: bool,
    /// Whether to act as in training.
    pub training: Param<Flag>,
}

impl LockedDropout {
    /// `[T, B, H]` or `[B, T, H]` (per `time_major`) -> same shape.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let axis = if self.time_major {
            TimeAxis::TimeMajor
        } else {
            TimeAxis::BatchMajor
        };
        infallible(run(x, Variant::Locked(axis), self.prob, &self.training))
    }
}

impl ModuleDisplay for LockedDropout {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("prob", &self.prob)
            .add("time_major", &self.time_major)
            .optional()
    }
}
