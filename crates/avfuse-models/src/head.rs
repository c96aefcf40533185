//! Classification heads: an MLP with dropout over a clip representation, and the activation
//! choice the temporal encoders and fusions share.

use burn::config::Config;
use burn::module::Module;
use burn::nn::activation::{Activation, ActivationConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};

use crate::error::{ModelError, invalid};

/// Non-linearity between layers (config value `relu` or `gelu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    /// `max(x, 0)`.
    Relu,
    /// `x * Phi(x)` with the exact (erf) Gaussian CDF, as PyTorch's default `gelu`.
    Gelu,
}

impl ActivationKind {
    /// Burn's configuration of this activation.
    pub fn config(self) -> ActivationConfig {
        match self {
            ActivationKind::Relu => ActivationConfig::Relu,
            ActivationKind::Gelu => ActivationConfig::Gelu,
        }
    }

    /// Build the (parameter-free) activation layer.
    pub fn init(self, device: &Device) -> Activation {
        self.config().init(device)
    }
}

/// Check that a dropout probability is in `[0, 1)`; `key` is its config path.
pub(crate) fn check_dropout(key: &str, p: f64) -> Result<(), ModelError> {
    if !(0.0..1.0).contains(&p) {
        return Err(invalid(key, p, "must be in [0, 1)"));
    }
    Ok(())
}

/// Check that a size is at least 1; `key` is its config path.
pub(crate) fn check_positive(key: &str, v: usize) -> Result<(), ModelError> {
    if v == 0 {
        return Err(invalid(key, v, "must be >= 1"));
    }
    Ok(())
}

/// Configuration of [`Head`], an MLP classifier.
#[derive(Config, Debug)]
pub struct HeadConfig {
    /// Width of the input representation (`D` of `[B, D]`).
    pub input_dim: usize,
    /// Widths of the hidden layers, in order; empty for a single linear layer.
    #[config(default = "vec![64]")]
    pub hidden: Vec<usize>,
    /// Activation after each hidden layer.
    #[config(default = "ActivationKind::Relu")]
    pub activation: ActivationKind,
    /// Dropout probability before every linear layer (training only), in `[0, 1)`.
    #[config(default = 0.2)]
    pub dropout: f64,
    /// Number of logits: 1 for binary classification (one logit, `sigmoid` gives the
    /// probability of class 1, e.g. "fake"), `K >= 2` for `K`-class logits (`softmax`).
    #[config(default = 1)]
    pub num_classes: usize,
}

impl HeadConfig {
    /// Check every field; errors name the key as `{prefix}.{field}`.
    pub fn validate(&self, prefix: &str) -> Result<(), ModelError> {
        check_positive(&format!("{prefix}.input_dim"), self.input_dim)?;
        if self.hidden.contains(&0) {
            return Err(invalid(
                &format!("{prefix}.hidden"),
                &self.hidden,
                "every hidden width must be >= 1",
            ));
        }
        check_dropout(&format!("{prefix}.dropout"), self.dropout)?;
        check_positive(&format!("{prefix}.num_classes"), self.num_classes)
    }

    /// Validate (keys reported under `model.head`) and build the head on `device`.
    pub fn init(&self, device: &Device) -> Result<Head, ModelError> {
        self.validate("model.head")?;
        let mut hidden = Vec::with_capacity(self.hidden.len());
        let mut d_in = self.input_dim;
        for &d_out in &self.hidden {
            hidden.push(LinearConfig::new(d_in, d_out).init(device));
            d_in = d_out;
        }
        Ok(Head {
            hidden,
            out: LinearConfig::new(d_in, self.num_classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation.init(device),
        })
    }
}

/// MLP head: `[B, input_dim]` to `[B, num_classes]` logits.
///
/// For each hidden width: dropout, linear, activation; then dropout and the output linear
/// layer (no activation: logits). Dropout is active only in training (the layer's training
/// flag on and an autodiff device, Burn's gate).
#[derive(Module, Debug)]
pub struct Head {
    hidden: Vec<Linear>,
    out: Linear,
    dropout: Dropout,
    activation: Activation,
}

impl Head {
    /// `x`: `[B, input_dim]`. Returns logits `[B, num_classes]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.hidden.iter().fold(x, |x, layer| {
            self.activation
                .forward(layer.forward(self.dropout.forward(x)))
        });
        self.out.forward(self.dropout.forward(x))
    }

    /// Number of logits. Reads the shape without initialising the lazy parameters.
    pub fn num_classes(&self) -> usize {
        self.out.weight.lazy_shape()[1]
    }

    /// Class probabilities from logits `[B, num_classes]`: `sigmoid` of the single logit for a
    /// binary head (`[B, 1]`, the probability of class 1), `softmax` over classes otherwise.
    pub fn probabilities(&self, logits: Tensor<2>) -> Tensor<2> {
        if self.num_classes() == 1 {
            sigmoid(logits)
        } else {
            softmax(logits, 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn binary_and_multiclass_shapes() {
        let d = Device::flex();
        let x = Tensor::<2>::from_data(
            TensorData::new((0..12).map(|i| i as f32 * 0.1).collect::<Vec<_>>(), [3, 4]),
            &d,
        );
        let bin = HeadConfig::new(4).init(&d).unwrap();
        let y = bin.forward(x.clone());
        assert_eq!(y.dims(), [3, 1]);
        let p = bin
            .probabilities(y)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        let multi = HeadConfig::new(4)
            .with_hidden(vec![8, 6])
            .with_activation(ActivationKind::Gelu)
            .with_num_classes(5)
            .init(&d)
            .unwrap();
        assert_eq!(multi.num_classes(), 5);
        let p = multi.probabilities(multi.forward(x));
        assert_eq!(p.dims(), [3, 5]);
        let rows = p.sum_dim(1).into_data().try_to_vec::<f32>().unwrap();
        assert!(rows.iter().all(|s| (s - 1.0).abs() < 1e-6), "{rows:?}");
        let linear = HeadConfig::new(4).with_hidden(vec![]).init(&d).unwrap();
        assert_eq!(linear.forward(Tensor::zeros([2, 4], &d)).dims(), [2, 1]);
    }

    #[test]
    fn invalid_configs_name_the_key() {
        let d = Device::flex();
        let e = HeadConfig::new(4).with_dropout(1.0).init(&d).unwrap_err();
        assert!(
            e.to_string().starts_with("model.head.dropout = 1.0:"),
            "{e}"
        );
        let e = HeadConfig::new(4)
            .with_num_classes(0)
            .validate("x")
            .unwrap_err();
        assert!(e.to_string().starts_with("x.num_classes = 0"), "{e}");
        let e = HeadConfig::new(4)
            .with_hidden(vec![3, 0])
            .validate("x")
            .unwrap_err();
        assert!(e.to_string().starts_with("x.hidden = [3, 0]"), "{e}");
    }
}
