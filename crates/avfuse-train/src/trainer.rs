//! The training loop: AdamW, warm-up + cosine schedule, early stopping, atomic checkpoints,
//! exact resume, a progress bar and `metrics.jsonl`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use avfuse_media::io::atomic_write;
use avfuse_metrics::binary_report;
use avfuse_models::{AvModel, Modality};
use avfuse_nn::modality_dropout::{DropMode, ModalityDropout};
use avfuse_report::EventWriter;

use crate::config::{Coverage, DropModeConfig, InactiveUpdate};
use crate::coverage::{
    encoder_grad_norm, inactive_modalities, remove_encoder_grads, training_loss,
};
use crate::optim::{build_optimizer, clip_grad_norm};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::checkpoint::{Checkpoint, CheckpointMeta};
use crate::config::SchedulerKind;
use crate::config::{Config, SelectionMetric};
use crate::data::{Augment, BatchOptions, Dataset, InputFill, ModalitySet, Prefetcher};
use crate::error::{Result, TrainError};
use crate::predict::predict;
use crate::schedule::{
    CosineWarmRestarts, EarlyStopping, PlateauConfig, PlateauMode, ReduceLrOnPlateau, WarmupCosine,
};

/// Burn version the workspace pins (recorded in checkpoints).
pub const BURN_VERSION: &str = "0.22.1";

/// The learning rate of every optimiser step (`training.scheduler`), warm-up included.
struct RunSchedule {
    kind: SchedulerKind,
    /// Warm-up and the `warmup_cosine` decay.
    cosine: WarmupCosine,
    steps_per_epoch: usize,
    restarts: Option<CosineWarmRestarts>,
    /// `plateau`: the only stateful schedule (saved in checkpoints).
    plateau: Option<ReduceLrOnPlateau>,
}

impl RunSchedule {
    fn new(cfg: &Config, steps_per_epoch: usize) -> Result<Self> {
        let t = &cfg.training;
        let bad = |e: crate::schedule::ScheduleError| {
            TrainError::Config(format!("training.scheduler: {e}"))
        };
        let cosine = WarmupCosine {
            base_lr: t.lr,
            min_lr: t.min_lr,
            warmup_steps: (t.warmup_epochs * steps_per_epoch as f64).round() as usize,
            total_steps: t.epochs * steps_per_epoch,
        };
        let restarts = match t.scheduler {
            SchedulerKind::CosineRestarts => Some(
                CosineWarmRestarts::new(t.lr, t.restart_epochs, t.restart_mult, t.min_lr)
                    .map_err(bad)?,
            ),
            _ => None,
        };
        let plateau = match t.scheduler {
            SchedulerKind::Plateau => {
                let p = &t.plateau;
                Some(
                    ReduceLrOnPlateau::new(
                        t.lr,
                        PlateauConfig {
                            mode: if t.early_stopping.metric.higher_is_better() {
                                PlateauMode::Max
                            } else {
                                PlateauMode::Min
                            },
                            factor: p.factor,
                            patience: p.patience,
                            threshold: p.threshold,
                            threshold_mode: p.threshold_mode,
                            cooldown: p.cooldown,
                            min_lr: t.min_lr,
                            ..PlateauConfig::default()
                        },
                    )
                    .map_err(bad)?,
                )
            }
            _ => None,
        };
        Ok(Self {
            kind: t.scheduler,
            cosine,
            steps_per_epoch: steps_per_epoch.max(1),
            restarts,
            plateau,
        })
    }

    /// Rate of the 0-based optimiser step `step`. Every schedule starts with the same linear
    /// warm-up `lr * (step + 1) / warmup_steps`; `cosine_restarts` then counts epochs from the
    /// end of the warm-up.
    fn lr(&mut self, step: usize) -> f64 {
        let warm = self.cosine.warmup_steps;
        if self.kind == SchedulerKind::WarmupCosine || step < warm {
            return self.cosine.lr(step);
        }
        let base = self.cosine.base_lr;
        match self.kind {
            SchedulerKind::WarmupCosine | SchedulerKind::Constant => base,
            SchedulerKind::CosineRestarts => {
                let epoch = (step - warm) as f64 / self.steps_per_epoch as f64;
                match self.restarts.as_mut().map(|r| r.step_to(epoch)) {
                    Some(Ok(lr)) => lr,
                    _ => base, // unreachable: the epoch is finite and >= 0
                }
            }
            SchedulerKind::Plateau => self.plateau.as_ref().map_or(base, |p| p.lr()),
        }
    }

    /// End of an epoch with its validation metric: `plateau` takes its step.
    fn end_epoch(&mut self, metric: f64) {
        if let Some(p) = self.plateau.as_mut() {
            p.step(metric);
        }
    }
}

/// Training steps between two reads of the loss from the device. Each read is a host sync
/// (it waits for the GPU to finish the queued work); the loss is accumulated on the device in
/// between. A non-finite loss is detected at the next read: the run stops at most this many
/// steps after it appeared, before any checkpoint of the diverged model is written.
pub const LOSS_SYNC_EVERY: usize = 16;

/// File names inside a run directory.
pub mod files {
    /// The configuration of the run.
    pub const CONFIG: &str = "config.yaml";
    /// One JSON object per epoch.
    pub const METRICS: &str = "metrics.jsonl";
    /// Checkpoint directory.
    pub const CHECKPOINTS: &str = "checkpoints";
    /// TensorBoard event files (`logging.tensorboard`).
    pub const TENSORBOARD: &str = "tensorboard";
    /// Checkpoint of the last completed epoch.
    pub const LAST: &str = "last.avfc";
    /// Checkpoint of the best epoch by the selection metric.
    pub const BEST: &str = "best.avfc";

    /// Periodic checkpoint of `epoch` (`training.checkpoint_every`): `epoch-0005.avfc`.
    pub fn periodic(epoch: usize) -> String {
        format!("epoch-{epoch:04}.avfc")
    }
}

/// How to run [`train`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Directory holding `train`/`val` splits (overrides `dataset.root`).
    pub data_root: PathBuf,
    /// Run directory: config, metrics and checkpoints go here.
    pub out_dir: PathBuf,
    /// Continue the run in `out_dir` from its last checkpoint.
    pub resume: bool,
    /// Compute device (without autodiff; the trainer adds it).
    pub device: Device,
    /// Draw progress bars (only when stderr is a terminal).
    pub progress: bool,
    /// Stop after this many epochs of this call even if the epoch budget is not spent
    /// (time-limited cluster jobs); the run continues with `resume`. The schedule is the
    /// one of the whole run, so stopping and resuming changes nothing.
    pub stop_after_epochs: Option<usize>,
}

/// What a finished run reports.
#[derive(Clone, Debug, Serialize)]
pub struct TrainOutcome {
    /// Epochs completed in total (including those before a resume).
    pub epochs_completed: usize,
    /// Optimiser steps taken in total.
    pub steps: usize,
    /// Selection metric name.
    pub metric: &'static str,
    /// Its best validation value.
    pub best_value: Option<f64>,
    /// Epoch of the best value.
    pub best_epoch: usize,
    /// True when early stopping ended the run.
    pub stopped_early: bool,
    /// Wall-clock seconds spent in training epochs (including before a resume).
    pub train_seconds: f64,
    /// Path of the best checkpoint.
    pub best_checkpoint: PathBuf,
    /// Path of the last checkpoint.
    pub last_checkpoint: PathBuf,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize)]
struct EpochRecord {
    epoch: usize,
    step: usize,
    lr: f64,
    train_loss: f64,
    val_loss: f64,
    /// Real vs fake (for a multi-class head: class 0 vs the rest, on `1 - P(class 0)`).
    val_auc: Option<f64>,
    val_ap: Option<f64>,
    /// Binary accuracy at `evaluation.threshold`, or the multi-class accuracy.
    val_accuracy: f64,
    /// Binary F1, or the multi-class macro F1.
    val_f1: f64,
    epoch_seconds: f64,
    clips_per_second: f64,
    dropped_video: usize,
    dropped_audio: usize,
    /// Mean L2 norm of the video encoder's gradient over the steps where it was measured
    /// (every `LOSS_SYNC_EVERY` steps, active samples only); `None` when never measured.
    grad_norm_video: Option<f64>,
    /// The same for the audio encoder.
    grad_norm_audio: Option<f64>,
    best: bool,
}

/// The mean of `(sum, count)`, `None` for no measurement.
fn mean_norm((sum, n): (f64, usize)) -> Option<f64> {
    (n > 0).then(|| sum / n as f64)
}

/// Mix a seed with a stream id (splitmix64), so each epoch (or each clip of an eval
/// corruption) gets independent streams.
/// Seed stream of training-time augmentation (xored into `training.seed`).
const AUGMENT_STREAM: u64 = 0xA06_3E47;

pub(crate) fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Build the model described by a checkpoint and load its weights onto `device`.
pub fn load_model(ckpt: &Checkpoint, path: &Path, device: &Device) -> Result<AvModel> {
    let model = ckpt.meta.config.model_config().init(device)?;
    let record =
        ModuleRecord::from_bytes(Bytes::from_bytes_vec(ckpt.model.clone())).map_err(|e| {
            TrainError::Checkpoint {
                path: path.to_path_buf(),
                detail: format!("bad model record: {e}"),
            }
        })?;
    model
        .try_load_record(record)
        .map_err(|e| TrainError::Checkpoint {
            path: path.to_path_buf(),
            detail: format!("weights do not fit the configured model: {e}"),
        })
}

fn model_bytes(model: &AvModel) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::Device(format!("cannot serialise model weights: {e}")))?;
    Ok(bytes.to_vec())
}

/// The parts of two configs that must agree for a resume (everything except the epoch
/// budget, early-stopping patience, evaluation and logging settings).
fn resume_differences(a: &Config, b: &Config) -> Vec<&'static str> {
    let mut diffs = Vec::new();
    if a.dataset != b.dataset {
        diffs.push("dataset");
    }
    if a.model != b.model {
        diffs.push("model");
    }
    if a.fusion != b.fusion {
        diffs.push("fusion");
    }
    let (mut ta, mut tb) = (a.training.clone(), b.training.clone());
    ta.epochs = 0;
    tb.epochs = 0;
    ta.early_stopping.patience = 0;
    tb.early_stopping.patience = 0;
    if ta != tb {
        diffs.push("training (other than epochs and early_stopping.patience)");
    }
    diffs
}

fn progress_bar(len: u64, enabled: bool, prefix: String) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(len),
        if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} clips {msg} ({elapsed}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(prefix);
    pb
}

/// Check that `dir` can be created and written, without leaving anything behind in it.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    tempfile::NamedTempFile::new_in(dir).map_err(|e| TrainError::io(dir, e))?;
    Ok(())
}

/// Train a model as `cfg` says. Returns when the epoch budget is spent or early stopping
/// triggers; `out_dir` then holds `config.yaml`, `metrics.jsonl` and
/// `checkpoints/{last,best}.avfc`.
///
/// Nothing is written before the data has loaded and the output directory proved writable.
/// Without `resume`, a run directory that already holds checkpoints is refused (no silent
/// overwrite). With `resume`, training restarts after the last completed epoch with the
/// saved model, optimiser, schedule position, early-stopping state and RNG streams (derived
/// from `(seed, epoch)`), so a resumed run continues exactly as an uninterrupted one would.
///
/// Burn's random generator is process-global: run one `train` per process at a time, or
/// dropout draws of concurrent runs interleave and results stop being reproducible.
pub fn train(cfg: &Config, opts: &TrainOptions) -> Result<TrainOutcome> {
    cfg.validate()?;
    let t = &cfg.training;
    let ckpt_dir = opts.out_dir.join(files::CHECKPOINTS);
    let last_path = ckpt_dir.join(files::LAST);
    let best_path = ckpt_dir.join(files::BEST);

    let resumed = if opts.resume {
        if !last_path.is_file() {
            return Err(TrainError::Config(format!(
                "--resume: {} does not exist; start a new run without --resume",
                last_path.display()
            )));
        }
        let ckpt = Checkpoint::load(&last_path)?;
        let diffs = resume_differences(&ckpt.meta.config, cfg);
        if !diffs.is_empty() {
            return Err(TrainError::Config(format!(
                "--resume: the config differs from the one {} was trained with in: {}",
                last_path.display(),
                diffs.join(", ")
            )));
        }
        Some(ckpt)
    } else {
        if last_path.exists() || best_path.exists() {
            return Err(TrainError::Config(format!(
                "{} already holds a run ({}); pass --resume to continue it or choose another output directory",
                opts.out_dir.display(),
                last_path.display()
            )));
        }
        None
    };

    let classes = cfg.dataset.classes.as_deref();
    let train_ds = std::sync::Arc::new(Dataset::load_with_classes(
        &opts.data_root.join(&cfg.dataset.train_split),
        classes,
    )?);
    let val_ds = Dataset::load_with_classes(&opts.data_root.join(&cfg.dataset.val_split), classes)?;
    if let Some(a) = &cfg.dataset.augment
        && a.needs_waveform()
        && !train_ds.waveform_augmentation(a)
    {
        warn!(
            split = %train_ds.dir.display(),
            "dataset.augment.audio_noise_p / pitch_p / shift_p need a cache that stores waveforms (one \
             written by this version's `avfuse prepare` or `avfuse synth`); this one holds only \
             log-mels, so those are skipped and gain and masks apply to the cached log-mel"
        );
    }
    val_ds.check_layout(&train_ds.layout)?;
    let model_cfg = cfg.model_config();
    if train_ds.layout.mel_frames_per_step != model_cfg.mel_frames_per_step() {
        return Err(TrainError::Data {
            path: train_ds.dir.clone(),
            detail: format!(
                "{} mel frames per video frame; the audio encoder expects {}",
                train_ds.layout.mel_frames_per_step,
                model_cfg.mel_frames_per_step()
            ),
        });
    }
    ensure_writable_dir(&ckpt_dir)?;
    atomic_write(&opts.out_dir.join(files::CONFIG), cfg.to_yaml().as_bytes())?;

    let device = opts.device.clone();
    let ad_device = device.clone().autodiff();
    let norm = match &resumed {
        Some(c) => c.meta.normalizer,
        None => train_ds.normalizer(),
    };
    let mut model = match &resumed {
        Some(ckpt) => load_model(ckpt, &last_path, &ad_device)?,
        None => {
            ad_device.seed(t.seed);
            // A fresh run starts from `model.video.pretrained` when set.
            model_cfg.init_pretrained(&ad_device)?
        }
    };
    let mut optim = build_optimizer(t);
    let class_weights = t.class_weights.as_deref();

    let n_train = train_ds.len();
    let steps_per_epoch = n_train.div_ceil(t.batch_size).div_ceil(t.grad_accum_steps);
    let mut schedule = RunSchedule::new(cfg, steps_per_epoch)?;
    let metric = t.early_stopping.metric;
    let mut early = EarlyStopping::new(
        metric.higher_is_better(),
        t.early_stopping.patience,
        t.early_stopping.min_delta,
    );
    let (mut epoch_done, mut step, mut train_seconds) = (0usize, 0usize, 0.0f64);
    let metrics_path = opts.out_dir.join(files::METRICS);

    if let Some(ckpt) = &resumed {
        optim = optim
            .from_bytes(Bytes::from_bytes_vec(ckpt.optimizer.clone()))
            .map_err(|e| TrainError::Checkpoint {
                path: last_path.clone(),
                detail: format!("bad optimiser state: {e}"),
            })?;
        epoch_done = ckpt.meta.epoch;
        step = ckpt.meta.step;
        train_seconds = ckpt.meta.train_seconds;
        early = ckpt.meta.early_stopping.clone();
        if schedule.plateau.is_some() {
            schedule.plateau = ckpt.meta.plateau.clone();
            if schedule.plateau.is_none() {
                return Err(TrainError::Checkpoint {
                    path: last_path.clone(),
                    detail: "no plateau scheduler state to resume from".into(),
                });
            }
        }
        early.patience = t.early_stopping.patience;
        // Keep the metrics lines of the epochs the checkpoint covers; later ones (written
        // after the checkpoint, before a crash) are replayed.
        if let Ok(text) = std::fs::read_to_string(&metrics_path) {
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v.get("epoch").and_then(|e| e.as_u64()))
                        .is_some_and(|e| e as usize <= epoch_done)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            atomic_write(&metrics_path, kept.as_bytes())?;
        }
        info!(epoch = epoch_done, step, path = %last_path.display(), "resuming");
    } else {
        atomic_write(&metrics_path, b"")?;
    }

    info!(
        train = n_train,
        val = val_ds.len(),
        params = model.num_params(),
        steps_per_epoch,
        "training on {:?}",
        device
    );
    let layout = train_ds.layout;
    let mut stopped_early = early.should_stop();
    let session_end = opts
        .stop_after_epochs
        .map_or(t.epochs, |n| (epoch_done + n).min(t.epochs));
    let md = &cfg.fusion.modality_dropout;
    let modality_dropout = ModalityDropout::new(
        cfg.fusion.modality_dropout_prob,
        match md.mode {
            DropModeConfig::Sample => DropMode::Sample,
            DropModeConfig::Batch => DropMode::Batch,
        },
        md.probs.clone(),
        md.ramp_epochs,
        md.rescale,
    )
    .and_then(|p| p.with_max_dropped(md.max_dropped))
    .map_err(|e| TrainError::Config(format!("fusion.modality_dropout: {e}")))?;
    let mut tb = if cfg.logging.tensorboard {
        let logdir = opts.out_dir.join(files::TENSORBOARD);
        // A resumed run gets its own event file, which marks a restart after the checkpoint's
        // last step: TensorBoard then hides what the interrupted run logged later (which
        // this run logs again). Steps of `train/*` scalars are 1-based (the step count after
        // the update), so the checkpoint's own last step stays visible.
        let w = if resumed.is_some() {
            EventWriter::create_resumed(&logdir, step as i64 + 1)?
        } else {
            EventWriter::create(&logdir)?
        };
        info!(path = %w.path().display(), "TensorBoard event file");
        Some(w)
    } else {
        None
    };
    if let Some(a) = &cfg.dataset.augment {
        info!(
            "training-time augmentation on (dataset.augment); audio gets gain and SpecAugment \
             masks on the cached log-mel, while audio_noise_p = {} and pitch_p = {} need \
             waveforms and are not applied",
            a.audio_noise_p, a.pitch_p
        );
    }
    while epoch_done < session_end && !stopped_early {
        let epoch = epoch_done + 1;
        let started = Instant::now();
        let mut order: Vec<usize> = (0..n_train).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(derive_seed(
            t.seed,
            epoch as u64,
        )));
        ad_device.seed(derive_seed(t.seed ^ 0xD80F_D80F, epoch as u64));

        let pb = progress_bar(
            n_train as u64,
            opts.progress && cfg.logging.progress,
            format!("epoch {epoch}/{}", t.epochs),
        );
        let (mut loss_sum, mut dropped) = (0.0f64, [0usize; 2]);
        // Per encoder: sum and count of measured gradient norms (active steps only).
        let mut grad_norms = [(0.0f64, 0usize); 2];
        let mut lr = schedule.lr(step);
        // The loss stays on the device and is read back every LOSS_SYNC_EVERY steps (and at
        // the end of the epoch): a read is a host sync that stalls a GPU pipeline.
        let mut pending: Option<Tensor<1>> = None;
        let (mut pending_steps, mut pending_clips) = (0usize, 0usize);
        let mut shown_loss = f64::NAN;
        let n_batches = n_train.div_ceil(t.batch_size);
        // Modality dropout is decided for the whole epoch up front (it depends only on seed,
        // epoch, step and clip ids), so the prefetch thread can build the batches ahead.
        let plan: Vec<(Vec<usize>, Vec<[u8; 2]>)> = order
            .chunks(t.batch_size)
            .enumerate()
            .map(|(bi, batch)| {
                let mut presence: Vec<Vec<u8>> = batch
                    .iter()
                    .map(|&i| train_ds.presence(i).to_vec())
                    .collect();
                let ids: Vec<u64> = batch.iter().map(|&i| i as u64).collect();
                let at = (step + bi) as u64;
                let counts = modality_dropout.apply(&mut presence, &ids, t.seed, epoch as u64, at);
                if counts.iter().any(|&c| c > 0) {
                    debug!(
                        epoch,
                        step = at,
                        video = counts[0],
                        audio = counts[1],
                        "modality dropout blanked"
                    );
                }
                dropped[0] += counts[0];
                dropped[1] += counts[1];
                let presence = presence.iter().map(|p| [p[0], p[1]]).collect();
                (batch.to_vec(), presence)
            })
            .collect();
        // zero_after_encoder: a blanked modality keeps its real input; the model zeroes its
        // features after the encoder.
        let fill = match cfg.fusion.coverage {
            Coverage::ZeroAfterEncoder => InputFill::Data,
            Coverage::None | Coverage::Dummy => InputFill::Present,
        };
        let feature_scale = modality_dropout.rescale_factor(epoch as u64, Modality::ALL.len());
        // Augmentation draws depend on (seed, epoch, clip) only: a resumed run repeats them.
        let batch_opts = BatchOptions {
            fill,
            augment: cfg.dataset.augment.clone().map(|policy| Augment {
                policy,
                seed: derive_seed(t.seed ^ AUGMENT_STREAM, epoch as u64),
            }),
        };
        let prefetched = if ad_device.clone().without_autodiff() == Device::flex() {
            Prefetcher::inline(train_ds.clone(), norm, plan, batch_opts)
        } else {
            Prefetcher::spawn(train_ds.clone(), norm, plan, batch_opts)
        };
        // Gradient accumulation: batches [g * k, min((g + 1) * k, n_batches)) make one step.
        let k = t.grad_accum_steps;
        let mut accum = GradientsAccumulator::<AvModel>::new();
        // Modalities inactive in every batch of the current group so far.
        let mut group_inactive: Option<Vec<Modality>> = None;
        for (bi, host) in prefetched.enumerate() {
            let clips = host.batch;
            let group_len = k.min(n_batches - (bi - bi % k));
            let group_done = bi % k + 1 == group_len;
            let host_presence = host.presence.clone();
            let (input, y) = host.upload(&ad_device);
            let batch_inactive = inactive_modalities(&host_presence);
            let (loss, bce) = training_loss(
                &model,
                input,
                y,
                &cfg.fusion,
                feature_scale,
                &batch_inactive,
                class_weights,
            );
            let weighted = bce.detach() * clips as f64;
            pending = Some(match pending.take() {
                Some(acc) => acc + weighted,
                None => weighted,
            });
            pending_steps += 1;
            pending_clips += clips;
            // The mean over the group's batches (the loss of each is already a batch mean).
            let loss = if group_len > 1 {
                loss / group_len as f64
            } else {
                loss
            };
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            group_inactive = Some(match group_inactive.take() {
                None => batch_inactive,
                Some(prev) => prev
                    .into_iter()
                    .filter(|m| batch_inactive.contains(m))
                    .collect(),
            });
            let mut grads = if group_len == 1 {
                grads
            } else {
                accum.accumulate(&model, grads);
                if !group_done {
                    pb.inc(clips as u64);
                    continue;
                }
                accum.grads()
            };
            let inactive = group_inactive.take().unwrap_or_default();
            let sync_now = pending_steps >= LOSS_SYNC_EVERY || bi + 1 == n_batches;
            if sync_now || tracing::enabled!(tracing::Level::DEBUG) {
                // Per-encoder gradient norms (a host read: only at sync points or when asked
                // for); a NaN or Inf gradient stops the run naming the module.
                for m in Modality::ALL {
                    let norm = encoder_grad_norm(&model, m, &grads);
                    let tag = if inactive.contains(&m) {
                        "inactive"
                    } else {
                        "active"
                    };
                    debug!(
                        epoch,
                        step,
                        "grad/[{tag}]/{}_encoder = {norm:.4e}",
                        m.name()
                    );
                    if !inactive.contains(&m) {
                        grad_norms[m as usize].0 += norm;
                        grad_norms[m as usize].1 += 1;
                        if sync_now && let Some(w) = tb.as_mut() {
                            w.add_scalar(
                                &format!("grad_norm/{}_encoder", m.name()),
                                norm as f32,
                                step as i64,
                            )?;
                        }
                    }
                    if !norm.is_finite() {
                        pb.abandon();
                        return Err(TrainError::GradientNotFinite {
                            epoch,
                            step,
                            module: format!("{}_encoder", m.name()),
                            norm,
                        });
                    }
                }
            }
            if cfg.fusion.inactive_update == InactiveUpdate::Skip {
                // No gradient entry -> AdamW leaves these parameters and their moments alone.
                remove_encoder_grads(&model, &inactive, &mut grads);
            }
            if let Some(max_norm) = t.grad_clip_norm {
                // Over the gradients the optimiser will apply; the norm stays on the device
                // and is read only when logged.
                let norm = clip_grad_norm(&model, &mut grads, max_norm);
                if tracing::enabled!(tracing::Level::DEBUG)
                    && let Some(n) = norm
                {
                    debug!(
                        epoch,
                        step,
                        "grad/total_norm = {:.4e}",
                        n.into_scalar::<f32>()
                    );
                }
            }
            lr = schedule.lr(step);
            model = optim.step(lr, model, grads);
            step += 1;
            if sync_now {
                let window = pending
                    .take()
                    .map_or(0.0, |acc| f64::from(acc.into_scalar::<f32>()));
                if !window.is_finite() {
                    pb.abandon();
                    return Err(TrainError::Diverged {
                        epoch,
                        step,
                        loss: window / pending_clips as f64,
                    });
                }
                loss_sum += window;
                shown_loss = window / pending_clips as f64;
                if let Some(w) = tb.as_mut() {
                    w.add_scalar("train/loss", shown_loss as f32, step as i64)?;
                    w.add_scalar("train/lr", lr as f32, step as i64)?;
                }
                debug!(
                    epoch,
                    step,
                    loss = shown_loss,
                    lr,
                    "steps {}..{step}",
                    step - pending_steps
                );
                (pending_steps, pending_clips) = (0, 0);
            }
            pb.inc(clips as u64);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!(
                "loss {:.4} lr {lr:.2e} {:.0} clips/s",
                shown_loss,
                pb.position() as f64 / secs
            ));
        }
        pb.finish_and_clear();
        let train_elapsed = started.elapsed().as_secs_f64();

        let eval_model = model.valid();
        let val_presence = val_ds.presence_for(ModalitySet::Both);
        let preds = predict(
            &eval_model,
            &val_ds,
            &val_presence,
            &norm,
            cfg.evaluation.batch_size,
            &device,
        )?;
        let report = binary_report(&val_ds.data.labels, &preds.probs, cfg.evaluation.threshold)?;
        // A multi-class head is selected on its multi-class accuracy and macro F1; AUC and
        // AP stay real vs fake.
        let (val_accuracy, val_f1) = match preds.multiclass(&val_ds.targets)? {
            Some(m) => (m.accuracy, m.macro_f1),
            None => (report.accuracy, report.f1),
        };
        let value = match metric {
            SelectionMetric::Auc => report.auc,
            SelectionMetric::Ap => report.ap,
            SelectionMetric::Accuracy => Some(val_accuracy),
            SelectionMetric::F1 => Some(val_f1),
            SelectionMetric::Loss => Some(preds.loss),
        }
        .ok_or_else(|| TrainError::Data {
            path: val_ds.dir.clone(),
            detail: format!(
                "validation {} is undefined: the split holds a single class",
                metric.name()
            ),
        })?;
        let is_best = early.update(epoch, value);
        schedule.end_epoch(value);
        stopped_early = early.should_stop();
        train_seconds += started.elapsed().as_secs_f64();
        epoch_done = epoch;

        let record = EpochRecord {
            epoch,
            step,
            lr,
            train_loss: loss_sum / n_train as f64,
            val_loss: preds.loss,
            val_auc: report.auc,
            val_ap: report.ap,
            val_accuracy,
            val_f1,
            epoch_seconds: started.elapsed().as_secs_f64(),
            clips_per_second: n_train as f64 / train_elapsed.max(1e-9),
            dropped_video: dropped[0],
            dropped_audio: dropped[1],
            grad_norm_video: mean_norm(grad_norms[Modality::Video as usize]),
            grad_norm_audio: mean_norm(grad_norms[Modality::Audio as usize]),
            best: is_best,
        };
        let ckpt = Checkpoint {
            meta: CheckpointMeta {
                avfuse_version: env!("CARGO_PKG_VERSION").to_string(),
                burn_version: BURN_VERSION.to_string(),
                config: cfg.clone(),
                normalizer: norm,
                layout,
                labels: cfg.class_names(),
                epoch,
                step,
                early_stopping: early.clone(),
                val_metrics: serde_json::to_value(&record).unwrap_or_default(),
                train_seconds,
                plateau: schedule.plateau.clone(),
            },
            model: model_bytes(&model)?,
            optimizer: optim
                .into_bytes()
                .map_err(|e| TrainError::Device(format!("cannot serialise optimiser state: {e}")))?
                .to_vec(),
        };
        ckpt.save(&last_path)?;
        if t.checkpoint_every > 0 && epoch % t.checkpoint_every == 0 {
            ckpt.save(&ckpt_dir.join(files::periodic(epoch)))?;
        }
        if is_best {
            // The best checkpoint carries no optimiser state: it is for evaluation and serving.
            Checkpoint {
                optimizer: Vec::new(),
                ..ckpt
            }
            .save(&best_path)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .map_err(|e| TrainError::io(&metrics_path, e))?;
        let line = serde_json::to_string(&record).unwrap_or_default();
        writeln!(f, "{line}").map_err(|e| TrainError::io(&metrics_path, e))?;
        if let Some(w) = tb.as_mut() {
            let e = epoch as i64;
            let scalars = [
                ("epoch/train_loss", Some(record.train_loss)),
                ("epoch/val_loss", Some(record.val_loss)),
                ("epoch/val_auc", record.val_auc),
                ("epoch/val_ap", record.val_ap),
                ("epoch/val_accuracy", Some(record.val_accuracy)),
                ("epoch/val_f1", Some(record.val_f1)),
                ("epoch/lr", Some(record.lr)),
                ("epoch/clips_per_second", Some(record.clips_per_second)),
                ("epoch/grad_norm_video", record.grad_norm_video),
                ("epoch/grad_norm_audio", record.grad_norm_audio),
            ];
            for (tag, v) in scalars {
                if let Some(v) = v {
                    w.add_scalar(tag, v as f32, e)?;
                }
            }
            w.flush()?;
        }
        info!(
            "epoch {epoch}/{}: train_loss {:.4} val_loss {:.4} val_{} {:.4}{} ({:.1}s, {:.0} clips/s)",
            t.epochs,
            record.train_loss,
            record.val_loss,
            metric.name(),
            value,
            if is_best { " *best*" } else { "" },
            record.epoch_seconds,
            record.clips_per_second
        );
        if cfg.fusion.modality_dropout_prob > 0.0 {
            info!(
                epoch,
                video = dropped[0],
                audio = dropped[1],
                "modality dropout: samples blanked per modality"
            );
        }
    }
    if stopped_early {
        info!(
            epoch = epoch_done,
            best_epoch = early.best_epoch,
            "early stopping"
        );
    }
    Ok(TrainOutcome {
        epochs_completed: epoch_done,
        steps: step,
        metric: metric.name(),
        best_value: early.best,
        best_epoch: early.best_epoch,
        stopped_early,
        train_seconds,
        best_checkpoint: best_path,
        last_checkpoint: last_path,
    })
}
