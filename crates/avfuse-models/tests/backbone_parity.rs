//! ResNet-18/50 and EfficientNet-B0 against torchvision/timm, weight import, checkpoints and
//! presence masking.
//!
//! `tests/fixtures/backbones.json` and `tests/fixtures/tiny_resnet18_w4.pth` are written by
//! `scripts/fixtures/make_backbone_fixtures.py` (torch 2.11, torchvision 0.26, timm 1.0). The
//! full-size weights are not committed: this test regenerates them from the formula in that
//! script (`synth` below, checked against the fixture's checksum), writes them under their
//! PyTorch names to a temporary `.safetensors` file, loads it with `load_pretrained`, and
//! compares the eval-mode logits and pooled features on a 2x3x64x64 input with PyTorch's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use avfuse_models::efficientnet::{EfficientNet, EfficientNetB0Config};
use avfuse_models::error::{ModelError, ShapeMismatch};
use avfuse_models::resnet::{ResNet, ResNetConfig};
use avfuse_models::weights::{HeadPolicy, LoadOptions, load_pretrained, torch_params};
use burn::module::{Module, ModuleVisitor, Param};
use burn::store::ModuleRecord;
use burn::tensor::{DType, Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use serde::Deserialize;

/// `max |a - b| / max |b|` must stay below this (the parity bound).
const REL_TOL: f32 = 1e-4;
/// Element-wise bound: `|a - b| <= ATOL + RTOL * |b|`.
const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

#[derive(Deserialize)]
struct Fixture {
    torch: String,
    input_shape: Vec<usize>,
    models: Vec<ModelFixture>,
    tiny_pth: TinyFixture,
}

#[derive(Deserialize)]
struct ModelFixture {
    name: String,
    num_classes: usize,
    params: Vec<ParamFixture>,
    bn_log4: HashMap<String, i32>,
    checksum: String,
    logits: Vec<f32>,
    features: Vec<f32>,
    features_dim: usize,
}

#[derive(Deserialize)]
struct ParamFixture {
    name: String,
    shape: Vec<usize>,
    dtype: String,
}

#[derive(Deserialize)]
struct TinyFixture {
    file: String,
    base_channels: usize,
    num_classes: usize,
    num_tensors: usize,
    logits: Vec<f32>,
    features: Vec<f32>,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture() -> Fixture {
    let path = fixtures_dir().join("backbones.json");
    let text = std::fs::read_to_string(&path).expect("read backbones.json");
    serde_json::from_str(&text).expect("parse backbones.json")
}

fn model_fixture<'a>(f: &'a Fixture, name: &str) -> &'a ModelFixture {
    f.models
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no fixture for {name}"))
}

// ---- the weight formula (identical to make_backbone_fixtures.py) -------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `u(name, i)` for `i` in `0..n`, exactly `k / 2^24`.
fn uniform(name: &str, n: usize) -> impl Iterator<Item = f64> {
    let seed = fnv1a64(name);
    (1..=n as u64).map(move |i| {
        let z = seed.wrapping_add(i.wrapping_mul(GOLDEN));
        (mix(z) >> 40) as f64 / f64::from(1u32 << 24)
    })
}

/// The synthetic value of float tensor `name` (see the script's docstring).
fn synth(
    name: &str,
    shape: &[usize],
    names: &HashSet<&str>,
    bn_log4: &HashMap<String, i32>,
) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let (prefix, _) = name.rsplit_once('.').unwrap_or(("", name));
    let k = bn_log4.get(prefix).copied().unwrap_or(0);
    let u = uniform(name, n);
    let v: Vec<f64> = if shape.len() >= 2 {
        let bound = (6.0 / (n / shape[0]) as f64).sqrt();
        u.map(|u| (2.0 * u - 1.0) * bound).collect()
    } else if name.ends_with(".running_var") {
        u.map(|u| (0.75 + 0.5 * u) * 4f64.powi(k)).collect()
    } else if name.ends_with(".running_mean") {
        u.map(|u| (2.0 * u - 1.0) * 0.1 * 2f64.powi(k)).collect()
    } else if name.ends_with(".weight") && names.contains(format!("{prefix}.running_mean").as_str())
    {
        u.map(|u| 0.75 + 0.5 * u).collect()
    } else {
        u.map(|u| (2.0 * u - 1.0) * 0.1).collect()
    };
    v.into_iter().map(|x| x as f32).collect()
}

/// The fixture model's float tensors by formula, keyed by PyTorch name.
fn synth_state_dict(m: &ModelFixture) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let names: HashSet<&str> = m.params.iter().map(|p| p.name.as_str()).collect();
    m.params
        .iter()
        .filter(|p| p.dtype == "float32")
        .map(|p| {
            let v = synth(&p.name, &p.shape, &names, &m.bn_log4);
            (p.name.clone(), (p.shape.clone(), v))
        })
        .collect()
}

fn checksum(tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> String {
    let mut total = 0u64;
    for (name, (_, values)) in tensors {
        let seed = fnv1a64(name);
        for (i, v) in values.iter().enumerate() {
            let z = seed
                .wrapping_add((i as u64).wrapping_mul(GOLDEN))
                .wrapping_add(u64::from(v.to_bits()));
            total = total.wrapping_add(mix(z));
        }
    }
    format!("{total:016x}")
}

/// Write float32 tensors, plus int64 zero `num_batches_tracked` buffers for the keys listed
/// in `int_keys`, as a PyTorch-named `.safetensors` file.
fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    int_keys: &[(String, Vec<usize>)],
) {
    let float_bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (shape, v))| {
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), shape.clone(), bytes)
        })
        .collect();
    let int_bytes: Vec<(String, Vec<usize>, Vec<u8>)> = int_keys
        .iter()
        .map(|(k, shape)| {
            let n: usize = shape.iter().product();
            (k.clone(), shape.clone(), vec![0u8; 8 * n])
        })
        .collect();
    let mut views = Vec::new();
    for (k, shape, bytes) in &float_bytes {
        views.push((
            k.as_str(),
            TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap(),
        ));
    }
    for (k, shape, bytes) in &int_bytes {
        views.push((
            k.as_str(),
            TensorView::new(Dtype::I64, shape.clone(), bytes).unwrap(),
        ));
    }
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Generate the fixture model's weights, check the checksum, write them (with the int64
/// buffers) to `dir/<name>.safetensors` and return its path.
fn write_fixture_weights(m: &ModelFixture, dir: &Path) -> PathBuf {
    let tensors = synth_state_dict(m);
    assert_eq!(
        checksum(&tensors),
        m.checksum,
        "{}: the weight formula differs from make_backbone_fixtures.py",
        m.name
    );
    let ints: Vec<(String, Vec<usize>)> = m
        .params
        .iter()
        .filter(|p| p.dtype != "float32")
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    let path = dir.join(format!("{}.safetensors", m.name));
    write_safetensors(&path, &tensors, &ints);
    path
}

// ---- comparison helpers ---------------------------------------------------------------

fn input(shape: &[usize], device: &Device) -> Tensor<4> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = uniform("input", n)
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect();
    let shape: [usize; 4] = shape.try_into().expect("4-d input shape");
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Assert `got` matches `want` (PyTorch): relative max error and element-wise bound.
/// Returns the relative max error.
fn assert_close(what: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "{what}: reference is all zeros");
    let mut max_err = 0f32;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let err = (a - b).abs();
        assert!(
            err <= ATOL + RTOL * b.abs(),
            "{what}[{i}]: got {a}, PyTorch {b} (|diff| {err})"
        );
        max_err = max_err.max(err);
    }
    let rel = max_err / scale;
    assert!(
        rel <= REL_TOL,
        "{what}: relative max error {rel} > {REL_TOL}"
    );
    eprintln!("{what}: max |diff| {max_err:.3e}, relative {rel:.3e} (scale {scale:.3})");
    rel
}

/// Asserts that `torch_params` of the module names exactly the fixture's state-dict keys
/// (minus `num_batches_tracked`), with the same shapes.
fn assert_same_keys<M: Module>(module: &M, m: &ModelFixture) {
    let ours: BTreeMap<String, Vec<usize>> = torch_params(module)
        .into_iter()
        .map(|p| (p.key, p.shape))
        .collect();
    let theirs: BTreeMap<String, Vec<usize>> = m
        .params
        .iter()
        .filter(|p| !p.name.ends_with("num_batches_tracked"))
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    assert_eq!(ours, theirs, "{}: parameter names/shapes differ", m.name);
}

/// Every float parameter of a module is `dtype`.
struct DTypeCheck(DType, usize);

impl ModuleVisitor for DTypeCheck {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        assert_eq!(param.val().dtype(), self.0);
        self.1 += 1;
    }
}

// ---- parity ----------------------------------------------------------------------------

fn resnet_parity(name: &str, depth: usize) {
    let f = fixture();
    let m = model_fixture(&f, name);
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let weights = write_fixture_weights(m, dir.path());
    let model = ResNetConfig::new(depth)
        .with_num_classes(Some(m.num_classes))
        .init(&device)
        .unwrap();
    assert_same_keys(&model, m);
    assert_eq!(model.feature_dim(), m.features_dim);
    let model = load_pretrained(model, &weights, &LoadOptions::default()).unwrap();
    let x = input(&f.input_shape, &device);
    assert_close(
        &format!("{name} logits (torch {})", f.torch),
        &values(model.forward(x.clone())),
        &m.logits,
    );
    assert_close(
        &format!("{name} features"),
        &values(model.features(x)),
        &m.features,
    );
}

#[test]
fn resnet18_matches_torchvision() {
    resnet_parity("resnet18", 18);
}

#[test]
fn resnet50_matches_torchvision() {
    resnet_parity("resnet50", 50);
}

#[test]
fn efficientnet_b0_matches_timm() {
    let f = fixture();
    let m = model_fixture(&f, "efficientnet_b0");
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let weights = write_fixture_weights(m, dir.path());
    let model = EfficientNetB0Config::new()
        .with_num_classes(Some(m.num_classes))
        .init(&device)
        .unwrap();
    assert_same_keys(&model, m);
    assert_eq!(model.feature_dim(), m.features_dim);
    let model = load_pretrained(model, &weights, &LoadOptions::default()).unwrap();
    let x = input(&f.input_shape, &device);
    assert_close(
        &format!("efficientnet_b0 logits (torch {})", f.torch),
        &values(model.forward(x.clone())),
        &m.logits,
    );
    assert_close(
        "efficientnet_b0 features",
        &values(model.features(x)),
        &m.features,
    );
}

// ---- .pth and errors ---------------------------------------------------------------------

fn tiny_config(t: &TinyFixture) -> ResNetConfig {
    ResNetConfig::new(18)
        .with_base_channels(t.base_channels)
        .with_num_classes(Some(t.num_classes))
}

fn tiny_pth(t: &TinyFixture) -> PathBuf {
    fixtures_dir().join(&t.file)
}

fn load_tiny(device: &Device) -> ResNet {
    let f = fixture();
    let model = tiny_config(&f.tiny_pth).init(device).unwrap();
    load_pretrained(model, tiny_pth(&f.tiny_pth), &LoadOptions::default()).unwrap()
}

#[test]
fn float16_pth_loads_as_float32_and_matches_torchvision() {
    let f = fixture();
    let t = &f.tiny_pth;
    let size = std::fs::metadata(tiny_pth(t)).unwrap().len();
    assert!(size < 200_000, "committed .pth is {size} bytes");
    let device = Device::flex();
    let model = load_tiny(&device);
    let mut check = DTypeCheck(DType::F32, 0);
    model.visit(&mut check);
    // Every file tensor but the 20 num_batches_tracked buffers is a parameter.
    assert_eq!(check.1, t.num_tensors - 20);
    let x = input(&f.input_shape, &device);
    assert_close(
        "tiny .pth logits",
        &values(model.forward(x.clone())),
        &t.logits,
    );
    assert_close(
        "tiny .pth features",
        &values(model.features(x)),
        &t.features,
    );
}

#[test]
fn head_policy_and_headless_models() {
    let f = fixture();
    let t = &f.tiny_pth;
    let device = Device::flex();
    let x = input(&f.input_shape, &device);
    let path = tiny_pth(t);

    // A different label set: the head's shapes do not match...
    let five = tiny_config(t).with_num_classes(Some(5));
    let err =
        load_pretrained(five.init(&device).unwrap(), &path, &LoadOptions::default()).unwrap_err();
    let ModelError::WeightMismatch {
        missing,
        unexpected,
        shape_mismatches,
        ..
    } = &err
    else {
        panic!("expected WeightMismatch, got {err}");
    };
    assert!(missing.is_empty() && unexpected.is_empty(), "{err}");
    assert_eq!(
        shape_mismatches,
        &vec![
            ShapeMismatch {
                key: "fc.bias".into(),
                expected: vec![5],
                found: vec![3],
            },
            ShapeMismatch {
                key: "fc.weight".into(),
                expected: vec![5, 32],
                found: vec![3, 32],
            },
        ]
    );
    let msg = err.to_string();
    assert!(
        msg.contains("fc.weight (model [5, 32], file [3, 32])"),
        "{msg}"
    );

    // ...so ignore it: the trunk loads, the head keeps its initialisation.
    let opts = LoadOptions {
        head: HeadPolicy::Ignore,
        ..LoadOptions::default()
    };
    let model = load_pretrained(five.init(&device).unwrap(), &path, &opts).unwrap();
    assert_close(
        "tiny trunk (head ignored)",
        &values(model.features(x.clone())),
        &t.features,
    );
    assert_eq!(model.forward(x.clone()).dims(), [2, 5]);

    // A feature extractor ignores the file's head; forward returns the features.
    let headless = tiny_config(t).with_num_classes(None);
    let model = load_pretrained(
        headless.init(&device).unwrap(),
        &path,
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(model.num_classes(), None);
    assert_close(
        "tiny headless forward",
        &values(model.forward(x)),
        &t.features,
    );
}

#[test]
fn mismatches_name_missing_and_unexpected_keys() {
    let f = fixture();
    let t = &f.tiny_pth;
    let device = Device::flex();

    // A deeper model: ResNet-34 needs blocks the ResNet-18 file lacks.
    let r34 = ResNetConfig::new(34)
        .with_base_channels(t.base_channels)
        .with_num_classes(Some(t.num_classes));
    let err = load_pretrained(
        r34.init(&device).unwrap(),
        tiny_pth(t),
        &LoadOptions::default(),
    )
    .unwrap_err();
    let ModelError::WeightMismatch {
        missing,
        unexpected,
        shape_mismatches,
        ..
    } = &err
    else {
        panic!("expected WeightMismatch, got {err}");
    };
    assert!(
        unexpected.is_empty() && shape_mismatches.is_empty(),
        "{err}"
    );
    // layer1.2, layer2.{2,3}, layer3.{2..5}, layer4.2: 8 basic blocks of 10 tensors each.
    assert_eq!(missing.len(), 80, "{err}");
    assert!(
        missing.contains(&"layer3.5.bn2.running_var".to_string()),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("80 missing key(s): layer1.2.bn1.bias"),
        "{err}"
    );

    // A file with one buffer removed and a stray tensor added: both are named.
    let model = tiny_config(t).init(&device).unwrap();
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = torch_params(&model)
        .into_iter()
        .map(|p| {
            let n = p.shape.iter().product();
            (p.key, (p.shape, vec![0.5f32; n]))
        })
        .collect();
    tensors.remove("layer1.0.bn1.running_var");
    tensors.insert(
        "layer5.0.conv1.weight".into(),
        (vec![2, 2, 1, 1], vec![0.0; 4]),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    write_safetensors(
        &path,
        &tensors,
        &[("bn1.num_batches_tracked".into(), vec![])],
    );
    let err = load_pretrained(model, &path, &LoadOptions::default()).unwrap_err();
    assert_eq!(
        err,
        ModelError::WeightMismatch {
            path: path.display().to_string(),
            missing: vec!["layer1.0.bn1.running_var".into()],
            unexpected: vec!["layer5.0.conv1.weight".into()],
            shape_mismatches: vec![],
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("1 missing key(s): layer1.0.bn1.running_var")
            && msg.contains("1 unexpected key(s): layer5.0.conv1.weight"),
        "{msg}"
    );

    // A DDP-style "module." prefix is stripped on request.
    let prefixed: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
        torch_params(&tiny_config(t).init(&device).unwrap())
            .into_iter()
            .map(|p| {
                let n = p.shape.iter().product();
                (format!("module.{}", p.key), (p.shape, vec![0.25f32; n]))
            })
            .collect();
    let path = dir.path().join("ddp.safetensors");
    write_safetensors(&path, &prefixed, &[]);
    let fresh = tiny_config(t).init(&device).unwrap();
    assert!(matches!(
        load_pretrained(fresh, &path, &LoadOptions::default()),
        Err(ModelError::WeightMismatch { .. })
    ));
    let opts = LoadOptions {
        strip_prefix: Some("module.".into()),
        ..LoadOptions::default()
    };
    let loaded = load_pretrained(tiny_config(t).init(&device).unwrap(), &path, &opts).unwrap();
    let record = loaded.into_record();
    assert!(!record.is_empty());

    // Files that cannot be read.
    let fresh = || tiny_config(t).init(&device).unwrap();
    assert!(matches!(
        load_pretrained(
            fresh(),
            dir.path().join("weights.onnx"),
            &LoadOptions::default()
        ),
        Err(ModelError::UnsupportedWeightFormat { .. })
    ));
    assert!(matches!(
        load_pretrained(
            fresh(),
            dir.path().join("absent.safetensors"),
            &LoadOptions::default()
        ),
        Err(ModelError::WeightFile { .. })
    ));
    let garbage = dir.path().join("garbage.pth");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    assert!(matches!(
        load_pretrained(fresh(), &garbage, &LoadOptions::default()),
        Err(ModelError::WeightFile { .. })
    ));
    let opts = LoadOptions {
        top_level_key: Some("state_dict".into()),
        ..LoadOptions::default()
    };
    assert!(matches!(
        load_pretrained(fresh(), tiny_pth(t), &opts),
        Err(ModelError::WeightFile { .. })
    ));
}

#[test]
fn invalid_configs_name_the_key() {
    let d = Device::flex();
    let e = ResNetConfig::new(101).init(&d).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("model.video.backbone.depth = 101"),
        "{e}"
    );
    let e = EfficientNetB0Config::new()
        .with_drop_rate(1.5)
        .init(&d)
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("model.video.backbone.drop_rate = 1.5"),
        "{e}"
    );
}

// ---- checkpoints ---------------------------------------------------------------------------

#[test]
fn checkpoint_round_trip_gives_identical_outputs() {
    let f = fixture();
    let device = Device::flex();
    let x = input(&f.input_shape, &device);

    // ResNet loaded from the .pth -> burnpack bytes -> a fresh (differently initialised) model.
    let model = load_tiny(&device);
    let before = values(model.forward(x.clone()));
    let bytes = model.into_record().into_bytes().unwrap();
    device.seed(99);
    let fresh = tiny_config(&f.tiny_pth).init(&device).unwrap();
    assert_ne!(values(fresh.forward(x.clone())), before);
    let restored = fresh
        .try_load_record(ModuleRecord::from_bytes(bytes).unwrap())
        .unwrap();
    assert_eq!(values(restored.forward(x.clone())), before);

    // EfficientNet-B0 (enum blocks, squeeze-excite) through a file on disk.
    let small = input(&[1, 3, 32, 32], &device);
    device.seed(1);
    let config = EfficientNetB0Config::new().with_num_classes(Some(4));
    let model = config.init(&device).unwrap();
    let before = values(model.forward(small.clone()));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("effnet.bpk");
    model.into_record().save(&path).unwrap();
    device.seed(2);
    let fresh = config.init(&device).unwrap();
    assert_ne!(values(fresh.forward(small.clone())), before);
    let restored = fresh
        .try_load_record(ModuleRecord::load(&path).unwrap())
        .unwrap();
    assert_eq!(values(restored.forward(small)), before);
}

// ---- presence ------------------------------------------------------------------------------

/// Rows `rows` of a `[B, ...]` tensor's values, `D` values per row.
fn rows(v: &[f32], rows: &[usize], d: usize) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| v[r * d..(r + 1) * d].to_vec())
        .collect()
}

/// `forward_masked` in training mode on `[x0, x1, x2]` with presence `[1, 0, 1]`: changing
/// the absent sample's input changes neither the present samples' outputs nor the running
/// statistics; the absent row is zero; the present rows equal a plain training forward on
/// the present samples only.
fn check_presence<M: Module>(
    build: impl Fn() -> M,
    forward: impl Fn(&M, Tensor<4>, Option<&Tensor<1>>) -> Tensor<2>,
    side: usize,
) {
    let device = Device::flex().autodiff();
    let shape = [3, 3, side, side];
    let n = shape.iter().product::<usize>();
    let base: Vec<f32> = uniform("presence", n)
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect();
    let mut other = base.clone();
    let per = n / 3;
    for (i, v) in other[per..2 * per].iter_mut().enumerate() {
        *v = 50.0 * (i as f32 * 0.37).sin();
    }
    let presence = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0], [3]), &device);
    let model_a = build();
    let model_b = build();
    let xa = Tensor::<4>::from_data(TensorData::new(base.clone(), shape), &device);
    let xb = Tensor::<4>::from_data(TensorData::new(other, shape), &device);
    let ya = values(forward(&model_a, xa, Some(&presence)));
    let yb = values(forward(&model_b, xb, Some(&presence)));
    let d = ya.len() / 3;
    assert_eq!(rows(&ya, &[0, 2], d), rows(&yb, &[0, 2], d));
    assert!(ya[d..2 * d].iter().all(|&v| v == 0.0));
    assert!(yb[d..2 * d].iter().all(|&v| v == 0.0));
    assert_eq!(running_stats(&model_a), running_stats(&model_b));
    // Training mode indeed ran: the running statistics moved.
    assert_ne!(running_stats(&model_a), running_stats(&build()));

    // The mask path equals running on the present subset (float tolerance: sums reorder).
    let model_c = build();
    let sub: Vec<f32> = [&base[..per], &base[2 * per..]].concat();
    let xc = Tensor::<4>::from_data(TensorData::new(sub, [2, 3, side, side]), &device);
    let yc = values(forward(&model_c, xc, None));
    let want = rows(&ya, &[0, 2], d);
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = yc
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err <= 1e-4 * scale.max(1.0),
        "mask vs subset: {err} (scale {scale})"
    );
    let (sa, sc) = (running_stats(&model_a), running_stats(&model_c));
    let err = sa
        .iter()
        .zip(&sc)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= 1e-3, "running statistics mask vs subset: {err}");
}

/// Every BatchNorm running statistic of a module, in visit order.
fn running_stats<M: Module>(module: &M) -> Vec<f32> {
    #[derive(Default)]
    struct Collect {
        path: Vec<String>,
        values: Vec<f32>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.path.last().is_some_and(|n| n.starts_with("running_")) {
                self.values.extend(values(param.val()));
            }
        }
    }
    let mut c = Collect::default();
    // `RunningState` keeps a training update per thread until it is synchronised, and
    // `visit` reads the synchronised value: `valid()` synchronises first.
    module.valid().visit(&mut c);
    assert!(!c.values.is_empty());
    c.values
}

#[test]
fn absent_samples_never_change_resnet_outputs() {
    let device = Device::flex().autodiff();
    let f = fixture();
    let t = &f.tiny_pth;
    check_presence(
        || {
            let m = tiny_config(t).init(&device).unwrap();
            load_pretrained(m, tiny_pth(t), &LoadOptions::default()).unwrap()
        },
        |m, x, p| m.forward_masked(x, p),
        32,
    );
}

#[test]
fn absent_samples_never_change_efficientnet_outputs() {
    let device = Device::flex().autodiff();
    // No dropout: its masks come from a process-wide stream and would differ between runs.
    let config = EfficientNetB0Config::new()
        .with_num_classes(Some(3))
        .with_drop_rate(0.0);
    let reference = {
        device.seed(5);
        config.init(&device).unwrap()
    };
    let bytes = reference.into_record().into_bytes().unwrap();
    check_presence(
        || {
            config
                .init(&device)
                .unwrap()
                .load_record(ModuleRecord::from_bytes(bytes.clone()).unwrap())
        },
        |m: &EfficientNet, x, p| m.forward_masked(x, p),
        32,
    );
}
