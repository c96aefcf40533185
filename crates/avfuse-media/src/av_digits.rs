//! The AV digits data build: MNIST test images paired with Free Spoken Digit Dataset
//! (FSDD) recordings of the same digit, each modality degraded so that neither alone is
//! enough (a real multimodal task in the spirit of AV-MNIST).
//!
//! Inputs (read from `DATA/mnist` and `DATA/fsdd/recordings`, never copied anywhere):
//! - MNIST test set, IDX format (`t10k-images-idx3-ubyte.gz`: 10,000 x 28 x 28 u8,
//!   `t10k-labels-idx1-ubyte.gz`: 10,000 u8), gzip or raw;
//! - FSDD: 8 kHz mono 16-bit WAV files named `{digit}_{speaker}_{take}.wav`.
//!
//! # Splits (fixed rules, no randomness)
//! - MNIST image `i`: test when `i % 5 == 4` (2,000 images), validation when
//!   `i % 10 == 3` (1,000), train otherwise (7,000). Both halves of the MNIST test set
//!   (the easier first 5,000 and the harder last 5,000) are spread over every split.
//! - FSDD take `t`: test when `t <= 4` (the official FSDD test split), validation when
//!   `5 <= t <= 9`, train when `t >= 10`, for every speaker.
//!
//! # Pairing (deterministic from the seed)
//! Within a split and for each digit, the images of that digit (in MNIST order) take the
//! recordings of that digit in the order of a seeded permutation, cycling through a fresh
//! permutation each time the list is exhausted, so each recording is used equally often
//! (+-1). See [`pair_split`].
//!
//! # Degradation (documented in [`Degradation`], defaults in brackets)
//! - Image (pixels scaled to `[0, 1]`): a square occlusion of side `occlusion_side` [9]
//!   pixels at a uniform random position is set to 0, then white Gaussian noise of standard
//!   deviation `image_noise_std` [0.45] is added and the result clipped to `[0, 1]`.
//! - Audio: the recording is scaled to unit RMS, centred in a window of `clip_samples`
//!   [8000 = 1 s at 8 kHz] samples (zero-padded on both sides, or centre-cropped when
//!   longer), then white Gaussian noise at `snr_db` [-6 dB] below the speech power is added
//!   over the whole window (so the padding carries noise too and the clip length does not
//!   leak), and the log-mel is taken ([`default_mel`]: 8 kHz, n_fft 256, 25 ms Hann window,
//!   20 ms hop, 32 mel bands up to 4 kHz, 80 dB range -> `[32, 51]`).
//!
//! The randomness of each image comes from `(seed, MNIST index)` and of each audio clip from
//! `(seed, split, pair index)`; the whole build is a pure function of the files and
//! [`AvDigitsConfig`], independent of thread count.
//!
//! # Normalisation
//! Images and log-mels are standardised with one scalar mean and standard deviation each,
//! measured on the train split ([`AvDigits::image_norm`], [`AvDigits::mel_norm`]) and applied
//! to every split.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::MediaError;
use crate::mel::{LogMel, MelConfig};

/// Number of classes (digits 0-9).
pub const N_CLASSES: usize = 10;

/// MNIST test images file name inside `DATA/mnist`.
pub const MNIST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
/// MNIST test labels file name inside `DATA/mnist`.
pub const MNIST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";

/// One of the three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training split.
    Train,
    /// Validation split (carved from the non-test data by a fixed rule).
    Val,
    /// Test split.
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    /// Lower-case name (`train`, `val`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    fn tag(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::Val => 2,
            Split::Test => 3,
        }
    }
}

/// Split of MNIST test image `index`: test when `index % 5 == 4`, validation when
/// `index % 10 == 3`, train otherwise (20 % / 10 % / 70 %).
pub fn image_split(index: usize) -> Split {
    if index % 5 == 4 {
        Split::Test
    } else if index % 10 == 3 {
        Split::Val
    } else {
        Split::Train
    }
}

/// Split of FSDD take `take`: 0-4 test (official), 5-9 validation, 10+ train.
pub fn take_split(take: u32) -> Split {
    match take {
        0..=4 => Split::Test,
        5..=9 => Split::Val,
        _ => Split::Train,
    }
}

/// splitmix64: a 64-bit mixer for deriving independent seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, stream: u64, a: u64, b: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(mix(seed ^ stream) ^ a) ^ b))
}

fn uniform(r: &mut ChaCha8Rng) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box-Muller, one value per two uniforms).
fn normal(r: &mut ChaCha8Rng) -> f64 {
    let u1 = uniform(r).max(f64::MIN_POSITIVE);
    let u2 = uniform(r);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Fisher-Yates shuffle driven by `r` (explicit, so the permutation does not depend on the
/// `rand` crate's algorithm choices).
fn shuffle<T>(v: &mut [T], r: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = (r.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

// ------------------------------------------------------------------------------ IDX

/// An IDX array of unsigned bytes (type code 0x08): its dimensions and data, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxU8 {
    /// Dimensions, outermost first (`[n, rows, cols]` for images, `[n]` for labels).
    pub dims: Vec<usize>,
    /// The bytes, `dims.iter().product()` of them.
    pub data: Vec<u8>,
}

/// Parse an IDX file's bytes (already decompressed). `path` only names the file in errors.
///
/// Format: two zero bytes, the type code (`0x08` = u8, the only one accepted), the number
/// of dimensions, each dimension as a big-endian u32, then the data.
pub fn parse_idx_u8(bytes: &[u8], path: &Path) -> Result<IdxU8, MediaError> {
    let bad = |d: String| Err(MediaError::format(path, d));
    if bytes.len() < 4 {
        return bad(format!(
            "IDX: {} bytes, shorter than the header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return bad("IDX: bad magic (the first two bytes must be 0)".into());
    }
    if bytes[2] != 0x08 {
        return bad(format!(
            "IDX: element type 0x{:02x}, only unsigned bytes (0x08) are supported",
            bytes[2]
        ));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if nd == 0 || bytes.len() < header {
        return bad(format!("IDX: truncated header ({nd} dimensions)"));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|k| {
            let o = 4 + 4 * k;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .unwrap_or(usize::MAX);
    if bytes.len() - header != n {
        return bad(format!(
            "IDX: dimensions {dims:?} need {n} data bytes, the file has {}",
            bytes.len() - header
        ));
    }
    Ok(IdxU8 {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Read an IDX u8 file, gzip-compressed (detected by its magic bytes) or raw.
pub fn read_idx_u8(path: &Path) -> Result<IdxU8, MediaError> {
    let raw = std::fs::read(path).map_err(|e| MediaError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| MediaError::format(path, format!("gzip: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx_u8(&bytes, path)
}

/// MNIST-style images and labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Mnist {
    /// Number of images.
    pub n: usize,
    /// Image height and width in pixels.
    pub hw: [usize; 2],
    /// Pixels, u8 `[n, h, w]` row-major.
    pub pixels: Vec<u8>,
    /// Labels 0-9, `[n]`.
    pub labels: Vec<u8>,
}

/// Read an images file (`[n, h, w]`) and a labels file (`[n]`, values 0-9) that match.
pub fn read_mnist(images: &Path, labels: &Path) -> Result<Mnist, MediaError> {
    let im = read_idx_u8(images)?;
    let lb = read_idx_u8(labels)?;
    let [n, h, w] = im.dims[..] else {
        return Err(MediaError::format(
            images,
            format!("IDX images need 3 dimensions, got {:?}", im.dims),
        ));
    };
    if lb.dims != [n] {
        return Err(MediaError::format(
            labels,
            format!("{:?} labels for {n} images", lb.dims),
        ));
    }
    if let Some(bad) = lb.data.iter().find(|&&l| l as usize >= N_CLASSES) {
        return Err(MediaError::format(
            labels,
            format!("label {bad} is not a digit 0-9"),
        ));
    }
    if h == 0 || w == 0 {
        return Err(MediaError::format(images, "empty images"));
    }
    Ok(Mnist {
        n,
        hw: [h, w],
        pixels: im.data,
        labels: lb.data,
    })
}

// ------------------------------------------------------------------------------ FSDD

/// One FSDD recording (its name parsed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    /// The digit spoken, 0-9.
    pub digit: u8,
    /// Speaker name.
    pub speaker: String,
    /// Take number.
    pub take: u32,
    /// The WAV file.
    pub path: PathBuf,
}

/// Parse `{digit}_{speaker}_{take}.wav` into `(digit, speaker, take)`; `None` for any other
/// name (the speaker may not contain `_`).
pub fn parse_fsdd_name(name: &str) -> Option<(u8, String, u32)> {
    let stem = name.strip_suffix(".wav")?;
    let mut parts = stem.split('_');
    let (d, s, t) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || s.is_empty() {
        return None;
    }
    let digit: u8 = d.parse().ok()?;
    if digit as usize >= N_CLASSES || d.len() != 1 {
        return None;
    }
    let take: u32 = t.parse().ok()?;
    Some((digit, s.to_string(), take))
}

/// List the FSDD recordings of `dir`, sorted by (digit, speaker, take). Files whose names do
/// not follow the pattern are ignored (and counted in a debug log line).
pub fn list_fsdd(dir: &Path) -> Result<Vec<Recording>, MediaError> {
    let mut out = Vec::new();
    let mut ignored = 0usize;
    for entry in std::fs::read_dir(dir).map_err(|e| MediaError::io(dir, e))? {
        let entry = entry.map_err(|e| MediaError::io(dir, e))?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_fsdd_name) {
            Some((digit, speaker, take)) => out.push(Recording {
                digit,
                speaker,
                take,
                path: entry.path(),
            }),
            None => ignored += 1,
        }
    }
    if ignored > 0 {
        tracing::debug!(dir = %dir.display(), ignored, "files not named digit_speaker_take.wav");
    }
    out.sort_by(|a, b| (a.digit, &a.speaker, a.take).cmp(&(b.digit, &b.speaker, b.take)));
    Ok(out)
}

/// Read a WAV file as mono `f32` in `[-1, 1]` (channels averaged) and its sample rate.
/// Integer formats of 8-32 bits and 32-bit float are accepted.
pub fn read_wav_mono(path: &Path) -> Result<(Vec<f32>, u32), MediaError> {
    let fmt = |e: hound::Error| MediaError::format(path, format!("WAV: {e}"));
    let mut reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(io) => MediaError::io(path, io),
        other => fmt(other),
    })?;
    let spec = reader.spec();
    let ch = spec.channels.max(1) as usize;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(fmt)?,
        hound::SampleFormat::Int => {
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(MediaError::format(
                    path,
                    format!("WAV: {} bits per sample", spec.bits_per_sample),
                ));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(fmt)?
        }
    };
    let mono = interleaved
        .chunks(ch)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    Ok((mono, spec.sample_rate))
}

// ------------------------------------------------------------------------------ build

/// How each modality is degraded (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Degradation {
    /// Side in pixels of the square occlusion set to 0 in each image (0: none). Default 9.
    pub occlusion_side: usize,
    /// Standard deviation of the white Gaussian noise added to the `[0, 1]` pixels, which are
    /// then clipped to `[0, 1]`. Default 0.45.
    pub image_noise_std: f32,
    /// Signal-to-noise ratio in dB of the white Gaussian noise mixed into each audio clip,
    /// relative to the speech power (the recording scaled to unit RMS). Default -6.
    pub snr_db: f32,
}

impl Default for Degradation {
    fn default() -> Self {
        Self {
            occlusion_side: 9,
            image_noise_std: 0.45,
            snr_db: -6.0,
        }
    }
}

/// Log-mel settings of the audio modality: 8 kHz, n_fft 256, 25 ms Hann window (200),
/// 20 ms hop (160), 32 Slaney mel bands over 0-4 kHz, 80 dB dynamic range. One second gives
/// `[32, 51]` (small, so the CPU benchmark stays within minutes).
pub fn default_mel() -> MelConfig {
    MelConfig {
        sample_rate: 8000,
        n_fft: 256,
        win_length: 200,
        hop_length: 160,
        n_mels: 32,
        fmin: 0.0,
        fmax: 4000.0,
        top_db: Some(80.0),
    }
}

/// Settings of the whole build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AvDigitsConfig {
    /// Seed of the pairing and of the degradations.
    pub seed: u64,
    /// Degradation of both modalities.
    pub degradation: Degradation,
    /// Audio window length in samples at `mel.sample_rate` (default 8000: 1 s at 8 kHz).
    pub clip_samples: usize,
    /// Log-mel settings; `mel.sample_rate` must equal the recordings' sample rate.
    pub mel: MelConfig,
}

impl Default for AvDigitsConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            degradation: Degradation::default(),
            clip_samples: 8000,
            mel: default_mel(),
        }
    }
}

impl AvDigitsConfig {
    /// Check every field; the message names the field.
    pub fn validate(&self) -> Result<(), MediaError> {
        self.mel.validate()?;
        let d = &self.degradation;
        if !(d.image_noise_std.is_finite() && d.image_noise_std >= 0.0) {
            return Err(MediaError::Invalid(format!(
                "av_digits: degradation.image_noise_std must be finite and >= 0, got {}",
                d.image_noise_std
            )));
        }
        if !d.snr_db.is_finite() {
            return Err(MediaError::Invalid(format!(
                "av_digits: degradation.snr_db must be finite, got {}",
                d.snr_db
            )));
        }
        if self.clip_samples == 0 {
            return Err(MediaError::Invalid(
                "av_digits: clip_samples must be > 0".into(),
            ));
        }
        Ok(())
    }

    /// Shape `[n_mels, frames]` of one clip's log-mel.
    pub fn mel_shape(&self) -> [usize; 2] {
        [self.mel.n_mels, self.mel.n_frames(self.clip_samples)]
    }
}

/// One split of the built dataset: paired, degraded, standardised inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct AvDigitsSplit {
    /// Which split.
    pub split: Split,
    /// Image height and width.
    pub image_hw: [usize; 2],
    /// Log-mel shape `[n_mels, frames]`.
    pub mel_shape: [usize; 2],
    /// Standardised degraded images, `[n, h, w]` row-major.
    pub images: Vec<f32>,
    /// Standardised degraded log-mels, `[n, n_mels, frames]` row-major.
    pub mels: Vec<f32>,
    /// Labels 0-9, `[n]`.
    pub labels: Vec<u8>,
    /// MNIST index of each sample's image, `[n]`.
    pub image_index: Vec<u32>,
    /// Index into [`AvDigits::recordings`] of each sample's recording, `[n]`.
    pub recording_index: Vec<u32>,
}

impl AvDigitsSplit {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split has no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (`h * w`).
    pub fn image_len(&self) -> usize {
        self.image_hw[0] * self.image_hw[1]
    }

    /// Values per log-mel (`n_mels * frames`).
    pub fn mel_len(&self) -> usize {
        self.mel_shape[0] * self.mel_shape[1]
    }

    /// Check that the buffers have the sizes the shapes say.
    pub fn check(&self) -> Result<(), MediaError> {
        let n = self.len();
        let ok = self.images.len() == n * self.image_len()
            && self.mels.len() == n * self.mel_len()
            && self.image_index.len() == n
            && self.recording_index.len() == n;
        if ok {
            Ok(())
        } else {
            Err(MediaError::Invalid(format!(
                "av_digits {} split: buffers do not match {n} samples of {:?} images and {:?} mels",
                self.split.name(),
                self.image_hw,
                self.mel_shape
            )))
        }
    }
}

/// Scalar standardisation `(x - mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Norm {
    /// Mean subtracted.
    pub mean: f32,
    /// Standard deviation divided by (>= 1e-6).
    pub std: f32,
}

impl Norm {
    fn of(x: &[f32]) -> Self {
        let n = x.len().max(1) as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        Norm {
            mean: mean as f32,
            std: (var.sqrt() as f32).max(1e-6),
        }
    }

    fn apply(&self, x: &mut [f32]) {
        let inv = 1.0 / self.std;
        x.iter_mut().for_each(|v| *v = (*v - self.mean) * inv);
    }
}

/// The built dataset.
#[derive(Clone, Debug)]
pub struct AvDigits {
    /// The configuration it was built with.
    pub config: AvDigitsConfig,
    /// Train split.
    pub train: AvDigitsSplit,
    /// Validation split.
    pub val: AvDigitsSplit,
    /// Test split.
    pub test: AvDigitsSplit,
    /// The recordings, in [`list_fsdd`] order (what `recording_index` points into).
    pub recordings: Vec<Recording>,
    /// Image standardisation (train statistics of the degraded `[0, 1]` pixels).
    pub image_norm: Norm,
    /// Log-mel standardisation (train statistics of the degraded log-mel in dB).
    pub mel_norm: Norm,
}

impl AvDigits {
    /// The split `s`.
    pub fn split(&self, s: Split) -> &AvDigitsSplit {
        match s {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

/// Where the two data sets live under a data root, if both are there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvDigitsPaths {
    /// MNIST test images (IDX, gzip).
    pub mnist_images: PathBuf,
    /// MNIST test labels (IDX, gzip).
    pub mnist_labels: PathBuf,
    /// FSDD `recordings` directory.
    pub fsdd_dir: PathBuf,
}

impl AvDigitsPaths {
    /// The expected paths under `root` (`root/mnist/...`, `root/fsdd/recordings`).
    pub fn under(root: &Path) -> Self {
        Self {
            mnist_images: root.join("mnist").join(MNIST_IMAGES),
            mnist_labels: root.join("mnist").join(MNIST_LABELS),
            fsdd_dir: root.join("fsdd").join("recordings"),
        }
    }

    /// The paths among these that do not exist (empty when the data is all there).
    pub fn missing(&self) -> Vec<PathBuf> {
        [&self.mnist_images, &self.mnist_labels]
            .into_iter()
            .filter(|p| !p.is_file())
            .chain(std::iter::once(&self.fsdd_dir).filter(|p| !p.is_dir()))
            .cloned()
            .collect()
    }
}

/// Pair the images of one split with the recordings of the same split, digit by digit.
///
/// `images`: `(MNIST index, label)` of the split's images, in MNIST order; `recordings`:
/// `(recording index, digit)` of the split's recordings. For digit `d`, the `j`-th image of
/// digit `d` gets `perm_c[j % r]` where `r` is the number of recordings of `d`,
/// `c = j / r`, and `perm_c` the `c`-th seeded permutation of those recordings
/// (seeded by `(seed, split, d, c)`). Returns one recording index per image, in input order.
///
/// # Errors
/// When a digit has images but no recording in the split.
pub fn pair_split(
    images: &[(usize, u8)],
    recordings: &[(usize, u8)],
    split: Split,
    seed: u64,
) -> Result<Vec<usize>, MediaError> {
    let mut by_digit: Vec<Vec<usize>> = vec![Vec::new(); N_CLASSES];
    for &(r, d) in recordings {
        if let Some(v) = by_digit.get_mut(d as usize) {
            v.push(r);
        }
    }
    let mut seen = [0usize; N_CLASSES];
    let mut perms: Vec<Vec<usize>> = vec![Vec::new(); N_CLASSES];
    let mut out = Vec::with_capacity(images.len());
    for &(idx, label) in images {
        let d = label as usize;
        let pool = by_digit.get(d).filter(|p| !p.is_empty()).ok_or_else(|| {
            MediaError::Invalid(format!(
                "av_digits {} split: image {idx} is a {label} but the split has no recording of {label}",
                split.name()
            ))
        })?;
        let j = seen[d];
        let r = pool.len();
        if j % r == 0 {
            let mut p = pool.clone();
            shuffle(
                &mut p,
                &mut rng_for(seed, 0x9A12 ^ split.tag(), d as u64, (j / r) as u64),
            );
            perms[d] = p;
        }
        out.push(perms[d][j % r]);
        seen[d] += 1;
    }
    Ok(out)
}

/// Degrade one image in place (`[h, w]` pixels in `[0, 1]`): occlusion then noise (see
/// [`Degradation`]); the randomness comes from `(seed, mnist_index)`.
pub fn degrade_image(px: &mut [f32], hw: [usize; 2], d: &Degradation, seed: u64, mnist_index: u64) {
    let [h, w] = hw;
    let mut r = rng_for(seed, 0x1A6E, mnist_index, 0);
    let side = d.occlusion_side.min(h).min(w);
    if side > 0 {
        let y0 = (r.next_u64() % (h - side + 1) as u64) as usize;
        let x0 = (r.next_u64() % (w - side + 1) as u64) as usize;
        for y in y0..y0 + side {
            px[y * w + x0..y * w + x0 + side].fill(0.0);
        }
    }
    if d.image_noise_std > 0.0 {
        let s = f64::from(d.image_noise_std);
        for v in px.iter_mut() {
            *v = (f64::from(*v) + s * normal(&mut r)).clamp(0.0, 1.0) as f32;
        }
    }
}

/// Fit a recording into the audio window and mix in noise: unit RMS, centred in
/// `clip_samples` (zero padding or centre crop), white Gaussian noise of RMS
/// `10^(-snr_db / 20)` over the whole window. The randomness comes from `r`. A silent
/// recording stays silent before the noise.
pub fn degrade_audio(
    audio: &[f32],
    clip_samples: usize,
    snr_db: f32,
    r: &mut ChaCha8Rng,
) -> Vec<f32> {
    let power = if audio.is_empty() {
        0.0
    } else {
        audio.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / audio.len() as f64
    };
    let gain = if power > 0.0 { 1.0 / power.sqrt() } else { 0.0 };
    let mut out = vec![0.0f32; clip_samples];
    if audio.len() <= clip_samples {
        let off = (clip_samples - audio.len()) / 2;
        for (o, &a) in out[off..].iter_mut().zip(audio) {
            *o = (f64::from(a) * gain) as f32;
        }
    } else {
        let off = (audio.len() - clip_samples) / 2;
        for (o, &a) in out.iter_mut().zip(&audio[off..]) {
            *o = (f64::from(a) * gain) as f32;
        }
    }
    let noise_rms = 10f64.powf(-f64::from(snr_db) / 20.0);
    for o in out.iter_mut() {
        *o = (f64::from(*o) + noise_rms * normal(r)) as f32;
    }
    out
}

/// Build the dataset from MNIST-style images and FSDD-style recordings already loaded:
/// `audio[k]` holds the samples of `recordings[k]` at `cfg.mel.sample_rate`.
pub fn build(
    mnist: &Mnist,
    recordings: &[Recording],
    audio: &[Vec<f32>],
    cfg: &AvDigitsConfig,
) -> Result<AvDigits, MediaError> {
    cfg.validate()?;
    if audio.len() != recordings.len() {
        return Err(MediaError::Invalid(format!(
            "av_digits: {} audio buffers for {} recordings",
            audio.len(),
            recordings.len()
        )));
    }
    if mnist.pixels.len() != mnist.n * mnist.hw[0] * mnist.hw[1] || mnist.labels.len() != mnist.n {
        return Err(MediaError::Invalid(
            "av_digits: MNIST buffers do not match their shape".into(),
        ));
    }
    let mel = LogMel::new(&cfg.mel)?;
    let mel_shape = cfg.mel_shape();
    let hw = mnist.hw;
    let img_len = hw[0] * hw[1];

    let mut splits = Vec::with_capacity(3);
    for split in Split::ALL {
        let images: Vec<(usize, u8)> = (0..mnist.n)
            .filter(|&i| image_split(i) == split)
            .map(|i| (i, mnist.labels[i]))
            .collect();
        let recs: Vec<(usize, u8)> = recordings
            .iter()
            .enumerate()
            .filter(|(_, r)| take_split(r.take) == split)
            .map(|(k, r)| (k, r.digit))
            .collect();
        let paired = pair_split(&images, &recs, split, cfg.seed)?;

        let pixels: Vec<f32> = images
            .par_iter()
            .flat_map_iter(|&(i, _)| {
                let mut px: Vec<f32> = mnist.pixels[i * img_len..(i + 1) * img_len]
                    .iter()
                    .map(|&p| f32::from(p) / 255.0)
                    .collect();
                degrade_image(&mut px, hw, &cfg.degradation, cfg.seed, i as u64);
                px
            })
            .collect();
        let mels: Vec<f32> = paired
            .par_iter()
            .enumerate()
            .flat_map_iter(|(j, &rec)| {
                let mut r = rng_for(cfg.seed, 0xA0D1 ^ split.tag(), j as u64, rec as u64);
                let clip = degrade_audio(
                    &audio[rec],
                    cfg.clip_samples,
                    cfg.degradation.snr_db,
                    &mut r,
                );
                mel.compute(&clip)
            })
            .collect();
        splits.push(AvDigitsSplit {
            split,
            image_hw: hw,
            mel_shape,
            images: pixels,
            mels,
            labels: images.iter().map(|&(_, l)| l).collect(),
            image_index: images.iter().map(|&(i, _)| i as u32).collect(),
            recording_index: paired.iter().map(|&r| r as u32).collect(),
        });
    }
    let mut test = splits
        .pop()
        .ok_or_else(|| MediaError::Invalid("no split".into()))?;
    let mut val = splits
        .pop()
        .ok_or_else(|| MediaError::Invalid("no split".into()))?;
    let mut train = splits
        .pop()
        .ok_or_else(|| MediaError::Invalid("no split".into()))?;
    if train.is_empty() {
        return Err(MediaError::Invalid(
            "av_digits: the train split is empty".into(),
        ));
    }
    let image_norm = Norm::of(&train.images);
    let mel_norm = Norm::of(&train.mels);
    for s in [&mut train, &mut val, &mut test] {
        image_norm.apply(&mut s.images);
        mel_norm.apply(&mut s.mels);
        s.check()?;
    }
    Ok(AvDigits {
        config: cfg.clone(),
        train,
        val,
        test,
        recordings: recordings.to_vec(),
        image_norm,
        mel_norm,
    })
}

/// Read the MNIST files and every FSDD recording under `paths`, then [`build`].
///
/// # Errors
/// A missing or malformed file (named in the message), or a recording whose sample rate is
/// not `cfg.mel.sample_rate`.
pub fn load(paths: &AvDigitsPaths, cfg: &AvDigitsConfig) -> Result<AvDigits, MediaError> {
    let mnist = read_mnist(&paths.mnist_images, &paths.mnist_labels)?;
    let recordings = list_fsdd(&paths.fsdd_dir)?;
    if recordings.is_empty() {
        return Err(MediaError::Invalid(format!(
            "{}: no FSDD recording (digit_speaker_take.wav)",
            paths.fsdd_dir.display()
        )));
    }
    let audio: Vec<Vec<f32>> = recordings
        .par_iter()
        .map(|r| {
            let (a, rate) = read_wav_mono(&r.path)?;
            if rate != cfg.mel.sample_rate {
                return Err(MediaError::format(
                    &r.path,
                    format!(
                        "sample rate {rate} Hz, the build expects {} Hz",
                        cfg.mel.sample_rate
                    ),
                ));
            }
            Ok(a)
        })
        .collect::<Result<_, _>>()?;
    build(&mnist, &recordings, &audio, cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rules() {
        let counts = Split::ALL.map(|s| (0..10_000).filter(|&i| image_split(i) == s).count());
        assert_eq!(counts, [7000, 1000, 2000]);
        assert_eq!(take_split(0), Split::Test);
        assert_eq!(take_split(4), Split::Test);
        assert_eq!(take_split(5), Split::Val);
        assert_eq!(take_split(9), Split::Val);
        assert_eq!(take_split(10), Split::Train);
        assert_eq!(take_split(49), Split::Train);
    }

    #[test]
    fn fsdd_names() {
        assert_eq!(
            parse_fsdd_name("7_jackson_32.wav"),
            Some((7, "jackson".into(), 32))
        );
        assert_eq!(parse_fsdd_name("7_jackson_32.mp3"), None);
        assert_eq!(parse_fsdd_name("12_jackson_3.wav"), None);
        assert_eq!(parse_fsdd_name("7__3.wav"), None);
        assert_eq!(parse_fsdd_name("7_a_b_3.wav"), None);
        assert_eq!(parse_fsdd_name("x_jackson_3.wav"), None);
    }

    #[test]
    fn idx_errors_name_the_problem() {
        let p = Path::new("x.idx");
        let e = parse_idx_u8(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], p).unwrap_err();
        assert!(e.to_string().contains("element type 0x0d"), "{e}");
        let e = parse_idx_u8(&[0, 0, 8, 1, 0, 0, 0, 3, 1, 2], p).unwrap_err();
        assert!(e.to_string().contains("need 3 data bytes"), "{e}");
        let ok = parse_idx_u8(&[0, 0, 8, 2, 0, 0, 0, 1, 0, 0, 0, 2, 5, 6], p).unwrap();
        assert_eq!(ok.dims, vec![1, 2]);
        assert_eq!(ok.data, vec![5, 6]);
    }

    #[test]
    fn degrade_audio_window_and_snr() {
        let speech: Vec<f32> = (0..3000).map(|i| ((i as f32) * 0.3).sin() * 0.1).collect();
        let mut r = ChaCha8Rng::seed_from_u64(1);
        let clean = degrade_audio(&speech, 8000, 200.0, &mut r);
        // Centred: 2500 samples of padding on each side; unit RMS inside.
        assert!(clean[..2500].iter().all(|v| v.abs() < 1e-6));
        assert!(clean[5500..].iter().all(|v| v.abs() < 1e-6));
        let rms = (clean[2500..5500].iter().map(|v| v * v).sum::<f32>() / 3000.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-3, "{rms}");
        let noisy = degrade_audio(&speech, 8000, 0.0, &mut r);
        let pad_rms = (noisy[..2500].iter().map(|v| v * v).sum::<f32>() / 2500.0).sqrt();
        assert!((pad_rms - 1.0).abs() < 0.08, "{pad_rms}");
        // Longer than the window: centre crop.
        let long: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let cropped = degrade_audio(&long, 8000, 300.0, &mut r);
        assert_eq!(cropped.len(), 8000);
        assert!(cropped[0] > 0.0 && cropped[0] < cropped[1]);
    }
}
