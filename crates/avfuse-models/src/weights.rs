//! Import PyTorch / timm / torchvision state dicts (`.safetensors`, `.pth`) into the avfuse
//! backbones ([`ResNet`], [`EfficientNet`]) by parameter name.
//!
//! The modules are built with PyTorch's parameter names, so a state dict maps onto them
//! almost one to one. What differs, and what this loader bridges:
//!
//! | PyTorch key | avfuse parameter | how |
//! |---|---|---|
//! | `X.weight` / `X.bias` of a BatchNorm | `X.gamma` / `X.beta` of a `MaskedBatchNorm` | renamed |
//! | `X.running_mean` / `X.running_var` | same names | loaded into the running statistics |
//! | `X.num_batches_tracked` | (none) | ignored |
//! | Linear `X.weight` `[out, in]` | `X.weight` `[in, out]` | transposed (burn-store's `PyTorchToBurnAdapter`) |
//! | conv `X.weight` `[out, in / groups, k, k]` | same | as is |
//! | the classifier (`fc.*`, `classifier.*`) | same | see [`HeadPolicy`]; ignored when the model has none |
//!
//! Tensors are read with burn-store (`SafetensorsStore`, `PytorchStore`: lazily, each tensor
//! only when applied), every float is cast to the model device's float dtype (a float16
//! checkpoint loads into a float32 model), and nothing is applied unless the whole state dict
//! matches: otherwise [`ModelError::WeightMismatch`] lists the missing keys, the unexpected
//! keys and the shape mismatches by their PyTorch names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, Tensor};
use burn_store::burn_pack::Tensor as PackTensor;
use burn_store::{
    FloatCastAdapter, ModuleAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use crate::efficientnet::EfficientNet;
use crate::error::{ModelError, ShapeMismatch};
use crate::resnet::ResNet;

/// A backbone whose parameter names follow a PyTorch state dict.
pub trait PretrainedBackbone: Module + Sized {
    /// State-dict prefix of the classifier head, without the dot (`"fc"`, `"classifier"`).
    const HEAD: &'static str;
}

impl PretrainedBackbone for ResNet {
    const HEAD: &'static str = "fc";
}

impl PretrainedBackbone for EfficientNet {
    const HEAD: &'static str = "classifier";
}

/// What to do with the classifier head (`fc.*` / `classifier.*`) of a state dict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeadPolicy {
    /// Load it like every other tensor: the model must have a classifier of the same size
    /// (a size mismatch is reported in [`ModelError::WeightMismatch`]). When the model has no
    /// classifier (`num_classes: None`), the file's head is ignored.
    #[default]
    Load,
    /// Never load it: the file's head keys are ignored and the model keeps its freshly
    /// initialised classifier (fine-tuning on a different label set).
    Ignore,
}

/// Options of [`load_pretrained`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The classifier head; see [`HeadPolicy`].
    pub head: HeadPolicy,
    /// For a `.pth` checkpoint that nests its state dict under a key (`"state_dict"`,
    /// `"model"`, ...): that key. `None` reads the top-level dict.
    pub top_level_key: Option<String>,
    /// A prefix to strip from every key of the file before matching (e.g. `"module."` for a
    /// checkpoint saved from `DistributedDataParallel`). Keys without it are kept as they are.
    pub strip_prefix: Option<String>,
}

/// A parameter of a module as a PyTorch state dict names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorchParam {
    /// PyTorch state-dict key, e.g. `layer1.0.bn1.weight`.
    pub key: String,
    /// The module's own path, e.g. `layer1.0.bn1.gamma` (enum variants skipped).
    pub path: String,
    /// Shape in PyTorch layout (a Linear weight is `[out, in]`).
    pub shape: Vec<usize>,
}

/// Collects every float parameter's path (enum variants skipped), the type of the module
/// declaring it, and its lazy shape, without initialising anything.
#[derive(Default)]
struct ParamCollector {
    path: Vec<String>,
    containers: Vec<String>,
    params: Vec<(String, String, Vec<usize>)>,
    float_dtype: Option<DType>,
}

impl ModuleVisitor for ParamCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.containers.pop();
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.float_dtype.is_none() {
            self.float_dtype = Some(param.lazy_device().settings().float_dtype.into());
        }
        let owner = self.containers.last().cloned().unwrap_or_default();
        self.params
            .push((self.path.join("."), owner, param.lazy_shape().to_vec()));
    }
}

/// The PyTorch key and layout of a module parameter declared by `owner` (`Struct:Name`).
fn torch_param(path: String, owner: &str, shape: Vec<usize>) -> TorchParam {
    let (prefix, name) = match path.rsplit_once('.') {
        Some((p, n)) => (Some(p), n),
        None => (None, path.as_str()),
    };
    let is_norm = matches!(owner, "Struct:MaskedBatchNorm" | "Struct:BatchNorm");
    let torch_name = match name {
        "gamma" if is_norm => "weight",
        "beta" if is_norm => "bias",
        other => other,
    };
    let key = match prefix {
        Some(p) => format!("{p}.{torch_name}"),
        None => torch_name.to_string(),
    };
    let shape = if owner == "Struct:Linear" && name == "weight" && shape.len() == 2 {
        vec![shape[1], shape[0]]
    } else {
        shape
    };
    TorchParam { key, path, shape }
}

/// Every float parameter of `module` under its PyTorch state-dict key, in module order.
/// Reads lazy shapes only: calling this initialises no parameter.
pub fn torch_params<M: Module>(module: &M) -> Vec<TorchParam> {
    collect(module).0
}

fn collect<M: Module>(module: &M) -> (Vec<TorchParam>, Option<DType>) {
    let mut collector = ParamCollector::default();
    module.visit(&mut collector);
    let params = collector
        .params
        .into_iter()
        .map(|(path, owner, shape)| torch_param(path, &owner, shape))
        .collect();
    (params, collector.float_dtype)
}

/// Whether `key` belongs to the classifier `head` (`fc` matches `fc.weight`, not `fc2.x`).
fn in_head(key: &str, head: &str) -> bool {
    key.strip_prefix(head)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// The tensors of a weight file, keyed by (prefix-stripped) PyTorch name.
fn read_tensors(
    path: &Path,
    opts: &LoadOptions,
) -> Result<BTreeMap<String, PackTensor>, ModelError> {
    let shown = path.display().to_string();
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let file_error = |message: String| ModelError::WeightFile {
        path: shown.clone(),
        message,
    };
    if !matches!(ext.as_str(), "safetensors" | "pth" | "pt" | "bin") {
        return Err(ModelError::UnsupportedWeightFormat { path: shown });
    }
    if !path.is_file() {
        return Err(file_error("no such file".into()));
    }
    let raw: BTreeMap<String, PackTensor> = match ext.as_str() {
        "safetensors" => {
            if opts.top_level_key.is_some() {
                tracing::warn!("top_level_key is ignored for safetensors file {shown}");
            }
            let mut store = SafetensorsStore::from_file(path);
            store
                .get_all_tensors()
                .map_err(|e| file_error(e.to_string()))?
                .clone()
        }
        "pth" | "pt" | "bin" => {
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            if let Some(key) = &opts.top_level_key {
                store = store.with_top_level_key(key.clone());
            }
            store
                .get_all_tensors()
                .map_err(|e| file_error(e.to_string()))?
                .clone()
        }
        _ => return Err(ModelError::UnsupportedWeightFormat { path: shown }),
    };
    let mut out = BTreeMap::new();
    for (key, mut tensor) in raw {
        let key = match &opts.strip_prefix {
            Some(p) => key
                .strip_prefix(p.as_str())
                .map(str::to_string)
                .unwrap_or(key),
            None => key,
        };
        tensor.name = key.clone();
        out.insert(key, tensor);
    }
    Ok(out)
}

/// Load a PyTorch state dict from `path` into `module` by name, and return the loaded module.
///
/// `path` ends in `.safetensors` (read with burn-store's `SafetensorsStore`) or `.pth` /
/// `.pt` / `.bin` (a `torch.save` file, read with `PytorchStore`; see
/// [`LoadOptions::top_level_key`] for nested checkpoints). The keys are those of
/// torchvision's ResNets and timm's `efficientnet_b0` / `resnet*`; see the module docs for how
/// they map onto avfuse parameters. BatchNorm running statistics are loaded too, so the
/// module in eval mode computes what the PyTorch model computes in `eval()`.
///
/// The whole file is checked before anything is applied: every model parameter must be
/// present with its shape, and every file tensor must belong to the model, except
/// `num_batches_tracked` buffers and the classifier head when [`HeadPolicy::Ignore`] is chosen
/// or the model has no classifier.
///
/// # Errors
///
/// - [`ModelError::UnsupportedWeightFormat`]: another extension.
/// - [`ModelError::WeightFile`]: the file is missing, unreadable or not of its format, or the
///   top-level key does not exist.
/// - [`ModelError::WeightMismatch`]: missing keys, unexpected keys or shape mismatches, each
///   listed by PyTorch key (the module is not modified).
/// - [`ModelError::WeightLoad`]: a tensor could not be decoded or is not a float tensor.
pub fn load_pretrained<M: PretrainedBackbone>(
    module: M,
    path: impl AsRef<Path>,
    opts: &LoadOptions,
) -> Result<M, ModelError> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let (params, float_dtype) = collect(&module);
    let head = M::HEAD;
    let model_has_head = params.iter().any(|p| in_head(&p.key, head));
    let load_head = model_has_head && opts.head == HeadPolicy::Load;

    let mut source = read_tensors(path, opts)?;
    // Drop what is never loaded: BatchNorm step counters, and the head unless it is loaded.
    source.retain(|key, _| {
        !key.ends_with(".num_batches_tracked") && (load_head || !in_head(key, head))
    });

    let wanted: Vec<&TorchParam> = params
        .iter()
        .filter(|p| load_head || !in_head(&p.key, head))
        .collect();
    let mut missing = Vec::new();
    let mut shape_mismatches = Vec::new();
    for p in &wanted {
        match source.get(&p.key) {
            None => missing.push(p.key.clone()),
            Some(t) if t.shape.to_vec() != p.shape => shape_mismatches.push(ShapeMismatch {
                key: p.key.clone(),
                expected: p.shape.clone(),
                found: t.shape.to_vec(),
            }),
            Some(_) => {}
        }
    }
    let known: BTreeSet<&str> = wanted.iter().map(|p| p.key.as_str()).collect();
    let unexpected: Vec<String> = source
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    missing.sort();
    shape_mismatches.sort_by(|a, b| a.key.cmp(&b.key));
    if !missing.is_empty() || !unexpected.is_empty() || !shape_mismatches.is_empty() {
        return Err(ModelError::WeightMismatch {
            path: shown,
            missing,
            unexpected,
            shape_mismatches,
        });
    }

    // Rename to the module's paths; the adapter transposes Linear weights (PyTorch layout)
    // and casts every float to the device's float dtype.
    let tensors: Vec<PackTensor> = wanted
        .iter()
        .filter_map(|p| {
            source.remove(&p.key).map(|mut t| {
                t.name = p.path.clone();
                t
            })
        })
        .collect();
    let expected = tensors.len();
    let adapter: Box<dyn ModuleAdapter> = match float_dtype {
        Some(dtype) => Box::new(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(dtype))),
        None => Box::new(PyTorchToBurnAdapter),
    };
    let mut module = module;
    let result = module.apply(tensors, None, Some(adapter), true);
    if !result.errors.is_empty() || result.applied.len() != expected {
        let mut message: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        if !result.unused.is_empty() {
            message.push(format!("not applied: {}", result.unused.join(", ")));
        }
        return Err(ModelError::WeightLoad {
            path: shown,
            message: message.join("; "),
        });
    }
    tracing::info!(
        "loaded {} tensors from {shown} ({})",
        result.applied.len(),
        if load_head {
            "with the classifier"
        } else {
            "without the classifier"
        }
    );
    Ok(module)
}
