//! The audio-visual classifier: frame CNN + mel CNN, per-step concat fusion, MLP head.

use avfuse_nn::mask_batch;
use burn::config::Config;
use burn::module::{Module, ParamId, list_param_ids};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::Modality;
use crate::encoders::{FrameCnn, FrameCnnConfig, MelCnn, MelCnnConfig};
use crate::error::{ModelError, invalid};

/// How an encoder treats the samples whose modality is absent (design 2.3). All three give
/// the same output for absent samples (zero features); they differ in what the encoder's
/// BatchNorm sees and in the work done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Blanking {
    /// Run on every sample; masked BatchNorm takes statistics from present samples only and
    /// zeroes absent ones (no gather/scatter).
    Mask,
    /// Run each encoder on its present samples only (gather), scatter the features back with
    /// zeros for absent ones: blanked samples cost nothing. Agrees with `Mask`.
    Compact,
    /// Run on every sample with plain BatchNorm: absent samples' zero inputs enter the batch
    /// statistics (the cheap baseline the other two fix).
    ZeroInput,
}

/// The `compact` step: run `f` on rows `rows` (dim 0) of `x` only and scatter its output
/// into `zeros` (which has one row per row of `x`). With no row listed, `f` does not run and
/// `zeros` is returned: the encoder then has no gradient entry at all.
pub fn run_on_rows<const D: usize, const O: usize>(
    x: Tensor<D>,
    rows: Vec<i64>,
    zeros: Tensor<O>,
    f: impl FnOnce(Tensor<D>) -> Tensor<O>,
) -> Tensor<O> {
    if rows.is_empty() {
        return zeros;
    }
    let n = rows.len();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), &zeros.device());
    let sub = f(x.select(0, idx.clone()));
    zeros.select_assign(0, idx, sub, IndexingUpdateOp::Add)
}

/// Configuration of [`AvModel`].
#[derive(Config, Debug)]
pub struct AvModelConfig {
    /// The per-frame video encoder; ignored when `enable_video` is false.
    pub video: FrameCnnConfig,
    /// The log-mel encoder; ignored when `enable_audio` is false.
    pub audio: MelCnnConfig,
    /// Build and use the video branch.
    #[config(default = true)]
    pub enable_video: bool,
    /// Build and use the audio branch.
    #[config(default = true)]
    pub enable_audio: bool,
    /// Width of the per-step fused representation.
    #[config(default = 64)]
    pub fusion_dim: usize,
    /// Hidden width of the MLP head.
    #[config(default = 64)]
    pub head_hidden: usize,
    /// Dropout probability before each head layer.
    #[config(default = 0.2)]
    pub head_dropout: f64,
    /// Number of output logits: 1 for binary (fake/real) classification.
    #[config(default = 1)]
    pub num_outputs: usize,
}

/// One batch of model input.
///
/// `B` clips of `T` frames; the mel has `T * mel_frames_per_step` frames so that the mel CNN
/// yields one step per video frame.
#[derive(Clone, Debug)]
pub struct AvInput {
    /// `[B, T, 3, H, W]` frames, normalised (u8 / 255 - 0.5).
    pub frames: Tensor<5>,
    /// `[B, 1, n_mels, T * mel_frames_per_step]` log-mel, normalised to zero mean, unit std.
    pub mel: Tensor<4>,
    /// `[B, 2]` presence mask in [`Modality`] column order (1 present, 0 absent).
    pub presence: Tensor<2>,
}

/// Audio-visual classifier.
///
/// Video: the frame CNN embeds each frame (`[B*T, Dv]` -> `[B, T, Dv]`). Audio: the mel CNN
/// embeds each video-frame-long slice of the spectrogram (`[B, T, Da]`). Each embedding is
/// multiplied by its modality's presence, so an absent modality contributes exactly zero.
///
/// Two streams are fused:
/// - the *clip* stream: the temporal average of each modality's embeddings
///   (`[B, Dv]`, `[B, Da]`), which carries per-clip appearance (e.g. a manipulated mouth);
/// - the *sync* stream: the per-step embeddings centred on their temporal average
///   (`V_t - mean_t V`, `A_t - mean_t A`), concatenated per step, passed through a linear
///   layer and a ReLU, *then* averaged over time (`[B, fusion_dim]`). Centring removes what
///   is constant within a clip (background, skin, voice timbre) and leaves what moves (mouth
///   opening, loudness); applying the non-linearity per step before averaging keeps their
///   step-by-step relation (audio-visual synchrony), which averaging each stream over time
///   first would erase.
///
/// The concatenated `[B, Dv + Da + fusion_dim]` clip representation goes through the head
/// (dropout, linear, ReLU, dropout, linear) to `[B, num_outputs]` logits.
#[derive(Module, Debug)]
pub struct AvModel {
    video: Option<FrameCnn>,
    audio: Option<MelCnn>,
    fuse: Linear,
    head_hidden: Linear,
    head_out: Linear,
    dropout: Dropout,
}

impl AvModelConfig {
    /// Check every field; errors name the config key (`model.*` / `fusion.*`).
    pub fn validate(&self) -> Result<(), ModelError> {
        if !self.enable_video && !self.enable_audio {
            return Err(invalid(
                "model.enable_video/model.enable_audio",
                (self.enable_video, self.enable_audio),
                "at least one modality must be enabled",
            ));
        }
        if self.enable_video {
            self.video.validate("model.video")?;
        }
        if self.enable_audio {
            self.audio.validate("model.audio")?;
        }
        if self.fusion_dim == 0 {
            return Err(invalid("fusion.dim", self.fusion_dim, "must be >= 1"));
        }
        if self.head_hidden == 0 {
            return Err(invalid(
                "model.head.hidden",
                self.head_hidden,
                "must be >= 1",
            ));
        }
        if !(0.0..1.0).contains(&self.head_dropout) {
            return Err(invalid(
                "model.head.dropout",
                self.head_dropout,
                "must be in [0, 1)",
            ));
        }
        if self.num_outputs == 0 {
            return Err(invalid(
                "model.head.num_outputs",
                self.num_outputs,
                "must be >= 1",
            ));
        }
        Ok(())
    }

    /// Validate and build the model on `device`.
    pub fn init(&self, device: &Device) -> Result<AvModel, ModelError> {
        self.validate()?;
        let video = self.enable_video.then(|| self.video.init(device));
        let audio = self.enable_audio.then(|| self.audio.init(device));
        let fused_in = if self.enable_video {
            self.video.embed_dim
        } else {
            0
        } + if self.enable_audio {
            self.audio.embed_dim
        } else {
            0
        };
        Ok(AvModel {
            video,
            audio,
            fuse: LinearConfig::new(fused_in, self.fusion_dim).init(device),
            head_hidden: LinearConfig::new(fused_in + self.fusion_dim, self.head_hidden)
                .init(device),
            head_out: LinearConfig::new(self.head_hidden, self.num_outputs).init(device),
            dropout: DropoutConfig::new(self.head_dropout).init(),
        })
    }
}

impl AvModel {
    /// Ids of the parameters of one modality's encoder (empty when that branch is disabled).
    /// Used by the trainer's rule for inactive modalities and its per-module gradient norms.
    pub fn encoder_param_ids(&self, m: Modality) -> Vec<ParamId> {
        match m {
            Modality::Video => self.video.as_ref().map(list_param_ids).unwrap_or_default(),
            Modality::Audio => self.audio.as_ref().map(list_param_ids).unwrap_or_default(),
        }
    }

    /// Visit the parameters of one modality's encoder (nothing when the branch is disabled).
    pub fn visit_encoder<V: burn::module::ModuleVisitor>(&self, m: Modality, visitor: &mut V) {
        match m {
            Modality::Video => {
                if let Some(v) = &self.video {
                    v.visit(visitor);
                }
            }
            Modality::Audio => {
                if let Some(a) = &self.audio {
                    a.visit(visitor);
                }
            }
        }
    }

    /// Clip representation `[B, Dv + Da + fusion_dim]` (the `embed` API: features before
    /// the head): the temporal averages of the present modalities' embeddings followed by
    /// the sync stream.
    pub fn embed(&self, input: AvInput) -> Tensor<2> {
        self.embed_with(input, Blanking::Mask)
    }

    /// [`AvModel::embed`] with a chosen way of handling blanked samples (design 2.3).
    pub fn embed_with(&self, input: AvInput, blanking: Blanking) -> Tensor<2> {
        self.embed_scaled(input, blanking, 1.0)
    }

    /// [`AvModel::embed_with`] with every modality's per-step features multiplied by
    /// `feature_scale` after masking: modality dropout's optional rescale of the kept
    /// modalities in training (`1 / (1 - p / M)`, slp's MMDrop). 1 changes nothing (and
    /// costs nothing).
    pub fn embed_scaled(
        &self,
        input: AvInput,
        blanking: Blanking,
        feature_scale: f64,
    ) -> Tensor<2> {
        let scale = |x: Tensor<3>| {
            if feature_scale == 1.0 {
                x
            } else {
                x * feature_scale
            }
        };
        let [b, t, c, h, w] = input.frames.dims();
        let device = input.frames.device();
        let mut steps: Vec<Tensor<3>> = Vec::with_capacity(2);
        // `compact` needs the present samples' indices on the host (one read of the [B, 2]
        // presence; free on the CPU, a sync on a GPU).
        let host_presence: Option<Vec<f32>> = match blanking {
            Blanking::Compact => input
                .presence
                .clone()
                .cast(burn::tensor::DType::F32)
                .into_data()
                .try_to_vec::<f32>()
                .ok(),
            _ => None,
        };
        // Unreadable presence (cannot happen for a float tensor cast to f32): `mask` gives
        // the same result, so fall back to it rather than treat every sample as absent.
        let blanking = match (blanking, &host_presence) {
            (Blanking::Compact, None) => Blanking::Mask,
            (b, _) => b,
        };
        let present = |m: Modality| -> Vec<i64> {
            host_presence
                .as_ref()
                .map(|p| {
                    (0..b)
                        .filter(|&i| p[i * 2 + m as usize] != 0.0)
                        .map(|i| i as i64)
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(video) = &self.video {
            let frames = input.frames.reshape([b * t, c, h, w]);
            let p = input
                .presence
                .clone()
                .narrow(1, Modality::Video as usize, 1)
                .reshape([b]);
            let d = video.embed_dim();
            let v = match blanking {
                Blanking::Mask => {
                    // One presence per frame for the BatchNorm statistics: [B] -> [B*T].
                    let per_frame = p.clone().reshape([b, 1]).repeat_dim(1, t).reshape([b * t]);
                    video.forward_masked(frames, Some(&per_frame))
                }
                Blanking::ZeroInput => video.forward_masked(frames, None),
                Blanking::Compact => {
                    let idx: Vec<i64> = present(Modality::Video)
                        .into_iter()
                        .flat_map(|i| (0..t as i64).map(move |k| i * t as i64 + k))
                        .collect();
                    let zeros = Tensor::<2>::zeros([b * t, d], &device);
                    run_on_rows(frames, idx, zeros, |x| video.forward_masked(x, None))
                }
            };
            let v = v.reshape([b, t, d]);
            steps.push(scale(mask_batch(v, p)));
        }
        if let Some(audio) = &self.audio {
            let p = input
                .presence
                .clone()
                .narrow(1, Modality::Audio as usize, 1)
                .reshape([b]);
            let a = match blanking {
                Blanking::Mask => audio.forward_masked(input.mel, Some(&p)),
                Blanking::ZeroInput => audio.forward_masked(input.mel, None),
                Blanking::Compact => {
                    let idx = present(Modality::Audio);
                    // One audio step per video frame (AvInput's layout): S = T.
                    let zeros = Tensor::<3>::zeros([b, t, audio.embed_dim()], &device);
                    run_on_rows(input.mel, idx, zeros, |x| audio.forward_masked(x, None))
                }
            };
            steps.push(scale(mask_batch(a, p)));
        }
        let mut clip = Vec::with_capacity(steps.len() + 1);
        let mut centred = Vec::with_capacity(steps.len());
        for x in steps {
            let mean = x.clone().mean_dim(1);
            centred.push(x - mean.clone());
            clip.push(mean.squeeze_dim::<2>(1));
        }
        let sync = relu(self.fuse.forward(Tensor::cat(centred, 2)))
            .mean_dim(1)
            .squeeze_dim::<2>(1);
        clip.push(sync);
        Tensor::cat(clip, 1)
    }

    /// Logits `[B, num_outputs]`.
    pub fn forward(&self, input: AvInput) -> Tensor<2> {
        self.forward_with(input, Blanking::Mask)
    }

    /// [`AvModel::forward`] with a chosen [`Blanking`].
    pub fn forward_with(&self, input: AvInput, blanking: Blanking) -> Tensor<2> {
        self.forward_scaled(input, blanking, 1.0)
    }

    /// [`AvModel::forward_with`] with the features scaled as in [`AvModel::embed_scaled`].
    pub fn forward_scaled(
        &self,
        input: AvInput,
        blanking: Blanking,
        feature_scale: f64,
    ) -> Tensor<2> {
        let z = self.embed_scaled(input, blanking, feature_scale);
        let z = relu(self.head_hidden.forward(self.dropout.forward(z)));
        self.head_out.forward(self.dropout.forward(z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    fn input(d: &Device, presence: [f32; 4]) -> AvInput {
        d.seed(3);
        AvInput {
            frames: Tensor::random([2, 4, 3, 32, 32], Distribution::Default, d),
            mel: Tensor::random([2, 1, 16, 16], Distribution::Default, d),
            presence: Tensor::from_data(TensorData::new(presence.to_vec(), [2, 2]), d),
        }
    }

    #[test]
    fn forward_shapes() {
        let d = Device::flex();
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .init(&d)
            .unwrap();
        assert_eq!(m.forward(input(&d, [1.0; 4])).dims(), [2, 1]);
    }

    #[test]
    fn absent_modality_input_never_changes_the_output() {
        // Eval (running statistics) and training (batch statistics from present samples
        // only, masked BatchNorm); head dropout off so training mode is deterministic.
        for d in [Device::flex(), Device::flex().autodiff()] {
            absent_input_is_ignored(&d);
        }
    }

    fn absent_input_is_ignored(d: &Device) {
        let d = d.clone();
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .with_head_dropout(0.0)
            .init(&d)
            .unwrap();
        // Sample 0: audio absent. Sample 1: video absent.
        let a = input(&d, [1.0, 0.0, 0.0, 1.0]);
        let mut b = a.clone();
        let noise_mel = Tensor::<4>::random([2, 1, 16, 16], Distribution::Default, &d);
        let noise_frames = Tensor::<5>::random([2, 4, 3, 32, 32], Distribution::Default, &d);
        // Change the absent audio of sample 0 and the absent video of sample 1.
        b.mel = Tensor::cat(
            vec![noise_mel.narrow(0, 0, 1), a.mel.clone().narrow(0, 1, 1)],
            0,
        );
        b.frames = Tensor::cat(
            vec![
                a.frames.clone().narrow(0, 0, 1),
                noise_frames.narrow(0, 1, 1),
            ],
            0,
        );
        let ya = m.forward(a).into_data().try_to_vec::<f32>().unwrap();
        let yb = m.forward(b).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(ya, yb);
    }

    #[test]
    fn unimodal_model_builds_and_runs() {
        let d = Device::flex();
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .with_enable_audio(false)
            .init(&d)
            .unwrap();
        assert_eq!(m.forward(input(&d, [1.0; 4])).dims(), [2, 1]);
        let e = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .with_enable_audio(false)
            .with_enable_video(false)
            .init(&d)
            .unwrap_err();
        assert!(e.to_string().contains("at least one modality"), "{e}");
    }
}

#[cfg(test)]
mod training_step {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn every_parameter_gets_a_gradient_and_adamw_moves_it() {
        let d = Device::flex().autodiff();
        d.seed(1);
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .init(&d)
            .unwrap();
        let input = AvInput {
            frames: Tensor::random([2, 4, 3, 32, 32], Distribution::Default, &d),
            mel: Tensor::random([2, 1, 16, 16], Distribution::Default, &d),
            presence: Tensor::from_data(TensorData::new(vec![1.0f32; 4], [2, 2]), &d),
        };
        let loss = m.forward(input).sum();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &m);
        let n_params = m
            .clone()
            .into_record()
            .into_bytes()
            .map(|b| b.len())
            .unwrap_or(0);
        assert!(n_params > 0);
        assert!(
            grads.len() >= 10,
            "only {} parameters got a gradient",
            grads.len()
        );
        let before = m.clone().into_record().into_bytes().unwrap().to_vec();
        let mut optim = burn::optim::AdamWConfig::new().init();
        let m2 = optim.step(1e-2, m, grads);
        let after = m2.clone().into_record().into_bytes().unwrap().to_vec();
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(changed > before.len() / 4);
    }
}

#[cfg(test)]
mod blanking {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, TensorData};

    /// Burn's random generator is process-global: these tests seed it and draw from it, so
    /// they take turns.
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Every float tensor (parameters and running statistics), in structural order.
    struct Collect(Vec<Vec<f32>>);

    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .push(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }

    /// Gradients of every parameter, in structural order (None where a parameter has none).
    struct Grads<'a>(&'a GradientsParams, Vec<Option<Vec<f32>>>);

    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.1.push(
                self.0
                    .get::<D>(param.id)
                    .map(|g| g.into_data().try_to_vec::<f32>().unwrap()),
            );
        }
    }

    /// Logits, per-parameter gradients, and every tensor after the step (running stats too).
    type Outcome = (Vec<f32>, Vec<Option<Vec<f32>>>, Vec<Vec<f32>>);

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 + 1e-4 * y.abs(),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    fn run(m: &AvModel, input: AvInput, blanking: Blanking) -> Outcome {
        let m = m.clone();
        let y = m.forward_with(input, blanking);
        let logits = y.clone().into_data().try_to_vec::<f32>().unwrap();
        let grads = GradientsParams::from_grads((y.clone() * y).sum().backward(), &m);
        let mut g = Grads(&grads, Vec::new());
        m.visit(&mut g);
        let mut stats = Collect(Vec::new());
        m.valid().visit(&mut stats);
        (logits, g.1, stats.0)
    }

    /// Design 2.3: `mask` and `compact` give the same outputs, gradients and running
    /// statistics in training mode; `zero_input` differs (its BatchNorm sees the zeros).
    #[test]
    fn mask_and_compact_agree_zero_input_does_not() {
        let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
        let d = Device::flex().autodiff();
        // A fresh, identical model per strategy (clones share their BatchNorm running state,
        // and the global RNG may be drawn by other tests): one record, loaded into new models.
        let cfg =
            AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new()).with_head_dropout(0.0);
        let bytes = cfg.init(&d).unwrap().into_record().into_bytes().unwrap();
        let model = || {
            let record = burn::store::ModuleRecord::from_bytes(bytes.clone()).unwrap();
            cfg.init(&d).unwrap().try_load_record(record).unwrap()
        };
        // [video, audio] per sample: both, video only, audio only, both, audio only.
        let presence = vec![1.0f32, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0];
        // Inputs from a fixed formula (not the global RNG, which other tests draw from).
        let wave =
            |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin() * 0.5).collect() };
        let input = || {
            let mut frames = Tensor::<5>::from_data(
                TensorData::new(wave(5 * 4 * 3 * 32 * 32, 0.37), [5, 4, 3, 32, 32]),
                &d,
            );
            let mut mel = Tensor::<4>::from_data(
                TensorData::new(wave(5 * 16 * 16, 0.11), [5, 1, 16, 16]),
                &d,
            );
            // Blanked inputs are zeros, as the loader writes them.
            let pv =
                Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0, 0.0], [5]), &d);
            let pa =
                Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 0.0, 1.0, 1.0, 1.0], [5]), &d);
            frames = frames * pv.reshape([5, 1, 1, 1, 1]);
            mel = mel * pa.reshape([5, 1, 1, 1]);
            AvInput {
                frames,
                mel,
                presence: Tensor::from_data(TensorData::new(presence.clone(), [5, 2]), &d),
            }
        };
        let (lm, gm, sm) = run(&model(), input(), Blanking::Mask);
        let (lc, gc, sc) = run(&model(), input(), Blanking::Compact);
        close(&lc, &lm, "logits");
        assert_eq!(gm.len(), gc.len());
        for (i, (a, b)) in gc.iter().zip(&gm).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => close(a, b, &format!("grad {i}")),
                (None, None) => {}
                _ => panic!("grad {i}: present in one strategy only"),
            }
        }
        for (i, (a, b)) in sc.iter().zip(&sm).enumerate() {
            close(
                a,
                b,
                &format!("tensor {i} after the step (running stats included)"),
            );
        }
        let (lz, _, _) = run(&model(), input(), Blanking::ZeroInput);
        let diff = lz
            .iter()
            .zip(&lm)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff > 1e-4,
            "zero_input should differ from mask (BatchNorm sees zeros), diff {diff}"
        );
    }

    /// Modality dropout's rescale: the clip stream (the per-modality temporal means) scales
    /// linearly with `feature_scale`, and 1 is exactly the unscaled forward.
    #[test]
    fn feature_scale_multiplies_the_modality_features() {
        let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
        let d = Device::flex();
        d.seed(5);
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .init(&d)
            .unwrap();
        let input = AvInput {
            frames: Tensor::random([2, 4, 3, 32, 32], Distribution::Default, &d),
            mel: Tensor::random([2, 1, 16, 16], Distribution::Default, &d),
            presence: Tensor::from_data(TensorData::new(vec![1.0f32, 1.0, 1.0, 0.0], [2, 2]), &d),
        };
        let vec = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        let base = vec(m.embed_with(input.clone(), Blanking::Mask));
        assert_eq!(
            vec(m.embed_scaled(input.clone(), Blanking::Mask, 1.0)),
            base
        );
        let scaled = vec(m.embed_scaled(input, Blanking::Mask, 1.5));
        let clip_dims = m.video.as_ref().map_or(0, |v| v.embed_dim())
            + m.audio.as_ref().map_or(0, |a| a.embed_dim());
        let width = base.len() / 2;
        for row in 0..2 {
            for k in 0..clip_dims {
                let (b, s) = (base[row * width + k], scaled[row * width + k]);
                assert!(
                    (s - 1.5 * b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "[{row}, {k}]: {s} vs 1.5 * {b}"
                );
            }
        }
        assert_ne!(scaled, base);
    }

    /// With no sample holding a modality, `compact` skips its encoder entirely.
    #[test]
    fn compact_skips_an_absent_modality() {
        let _g = RNG.lock().unwrap_or_else(|e| e.into_inner());
        let d = Device::flex().autodiff();
        d.seed(13);
        let m = AvModelConfig::new(FrameCnnConfig::new(), MelCnnConfig::new())
            .with_head_dropout(0.0)
            .init(&d)
            .unwrap();
        let input = AvInput {
            frames: Tensor::zeros([2, 4, 3, 32, 32], &d),
            mel: Tensor::random([2, 1, 16, 16], Distribution::Default, &d),
            presence: Tensor::from_data(TensorData::new(vec![0.0f32, 1.0, 0.0, 1.0], [2, 2]), &d),
        };
        let (lc, gc, _) = run(&m, input.clone(), Blanking::Compact);
        let (lm, _, _) = run(&m, input, Blanking::Mask);
        close(&lc, &lm, "logits");
        // The video encoder's parameters got no gradient at all (it did not run).
        let video_ids = m.encoder_param_ids(Modality::Video);
        assert!(!video_ids.is_empty());
        let with_grad = gc.iter().filter(|g| g.is_some()).count();
        let mut all = Grads(&GradientsParams::new(), Vec::new());
        m.visit(&mut all);
        assert!(
            with_grad < all.1.len(),
            "some parameters (the video encoder's) have no gradient"
        );
    }
}
