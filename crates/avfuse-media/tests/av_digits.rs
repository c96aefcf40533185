//! The AV digits data build on synthetic stand-ins written by the test itself: a tiny
//! gzip IDX image/label pair and short 8 kHz WAV files named like FSDD's. Never reads
//! `../shared/data`.

use std::io::Write;
use std::path::Path;

use avfuse_media::av_digits::{
    AvDigitsConfig, AvDigitsPaths, Degradation, MNIST_IMAGES, MNIST_LABELS, N_CLASSES, Split,
    image_split, list_fsdd, load, pair_split, read_mnist, read_wav_mono, take_split,
};
use avfuse_media::mel::MelConfig;

const N_IMAGES: usize = 60;
const SIDE: usize = 6;
const SPEAKERS: [&str; 2] = ["alice", "bob"];
const TAKES: u32 = 13;

fn label_of(i: usize) -> u8 {
    ((i * 7 + i / 10) % N_CLASSES) as u8
}

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn write_gz(path: &Path, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

/// Pixel `p` of image `i`: a function of both, so every image is distinct.
fn pixel(i: usize, p: usize) -> u8 {
    ((i * 31 + p * 17) % 256) as u8
}

/// A tone whose frequency encodes the digit, 300-700 samples long.
fn recording(digit: u8, speaker: usize, take: u32) -> Vec<i16> {
    let len = 300 + 37 * ((digit as usize + take as usize + speaker) % 11);
    let f = 200.0 + 150.0 * f32::from(digit);
    (0..len)
        .map(|n| ((2.0 * std::f32::consts::PI * f * n as f32 / 8000.0).sin() * 8000.0) as i16)
        .collect()
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Writes `root/mnist/*.gz` and `root/fsdd/recordings/*.wav` (plus a stray file).
fn write_stand_ins(root: &Path) {
    let mnist = root.join("mnist");
    let fsdd = root.join("fsdd").join("recordings");
    std::fs::create_dir_all(&mnist).unwrap();
    std::fs::create_dir_all(&fsdd).unwrap();
    let pixels: Vec<u8> = (0..N_IMAGES)
        .flat_map(|i| (0..SIDE * SIDE).map(move |p| pixel(i, p)))
        .collect();
    let labels: Vec<u8> = (0..N_IMAGES).map(label_of).collect();
    write_gz(
        &mnist.join(MNIST_IMAGES),
        &idx_bytes(&[N_IMAGES as u32, SIDE as u32, SIDE as u32], &pixels),
    );
    write_gz(
        &mnist.join(MNIST_LABELS),
        &idx_bytes(&[N_IMAGES as u32], &labels),
    );
    for digit in 0..N_CLASSES as u8 {
        for (s, name) in SPEAKERS.iter().enumerate() {
            for take in 0..TAKES {
                write_wav(
                    &fsdd.join(format!("{digit}_{name}_{take}.wav")),
                    &recording(digit, s, take),
                );
            }
        }
    }
    std::fs::write(fsdd.join("README.txt"), "not a recording").unwrap();
}

fn small_config(seed: u64) -> AvDigitsConfig {
    AvDigitsConfig {
        seed,
        degradation: Degradation {
            occlusion_side: 3,
            image_noise_std: 0.2,
            snr_db: 0.0,
        },
        clip_samples: 800,
        mel: MelConfig {
            sample_rate: 8000,
            n_fft: 64,
            win_length: 64,
            hop_length: 32,
            n_mels: 8,
            fmin: 0.0,
            fmax: 4000.0,
            top_db: Some(80.0),
        },
    }
}

#[test]
fn parses_idx_gzip_and_raw_and_wav() {
    let dir = tempfile::tempdir().unwrap();
    write_stand_ins(dir.path());
    let paths = AvDigitsPaths::under(dir.path());
    assert!(paths.missing().is_empty());
    let m = read_mnist(&paths.mnist_images, &paths.mnist_labels).unwrap();
    assert_eq!((m.n, m.hw), (N_IMAGES, [SIDE, SIDE]));
    assert_eq!(m.pixels[7 * 36 + 5], pixel(7, 5));
    assert_eq!(m.labels[13], label_of(13));

    // The same bytes without gzip read the same.
    let raw = dir.path().join("raw-labels.idx");
    let labels: Vec<u8> = (0..N_IMAGES).map(label_of).collect();
    std::fs::write(&raw, idx_bytes(&[N_IMAGES as u32], &labels)).unwrap();
    assert_eq!(read_mnist(&paths.mnist_images, &raw).unwrap(), m);

    // Labels that do not match the images are refused, naming the file.
    let short = dir.path().join("short-labels.idx");
    std::fs::write(&short, idx_bytes(&[3], &[1, 2, 3])).unwrap();
    let e = read_mnist(&paths.mnist_images, &short).unwrap_err();
    assert!(e.to_string().contains("short-labels.idx"), "{e}");

    let recs = list_fsdd(&paths.fsdd_dir).unwrap();
    assert_eq!(recs.len(), N_CLASSES * SPEAKERS.len() * TAKES as usize);
    assert_eq!(
        (recs[0].digit, recs[0].speaker.as_str(), recs[0].take),
        (0, "alice", 0)
    );
    // Sorted by (digit, speaker, take): take 10 comes after take 9, not after take 1.
    assert_eq!(recs[10].take, 10);
    let (audio, rate) = read_wav_mono(&recs[3].path).unwrap();
    assert_eq!(rate, 8000);
    let expect = recording(0, 0, 3);
    assert_eq!(audio.len(), expect.len());
    assert!((audio[5] - f32::from(expect[5]) / 32768.0).abs() < 1e-6);
}

#[test]
fn pairs_by_class_with_the_split_rules_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    write_stand_ins(dir.path());
    let paths = AvDigitsPaths::under(dir.path());
    let a = load(&paths, &small_config(5)).unwrap();
    let b = load(&paths, &small_config(5)).unwrap();
    let c = load(&paths, &small_config(6)).unwrap();

    let mut total = 0;
    for split in Split::ALL {
        let s = a.split(split);
        s.check().unwrap();
        assert_eq!(s.image_hw, [SIDE, SIDE]);
        assert_eq!(s.mel_shape, [8, 1 + 800 / 32]);
        total += s.len();
        for k in 0..s.len() {
            let img = s.image_index[k] as usize;
            let rec = &a.recordings[s.recording_index[k] as usize];
            // Image split rule, recording split rule, and the pair is of one digit.
            assert_eq!(image_split(img), split);
            assert_eq!(take_split(rec.take), split);
            assert_eq!(s.labels[k], label_of(img));
            assert_eq!(rec.digit, s.labels[k], "{split:?} sample {k}");
        }
        // Deterministic: same seed, same bytes; another seed, another pairing/degradation.
        let sb = b.split(split);
        assert_eq!(s, sb);
        assert_ne!(s.mels, c.split(split).mels);
    }
    assert_eq!(total, N_IMAGES);
    assert_eq!(
        (a.train.len(), a.val.len(), a.test.len()),
        (42, 6, 12),
        "70/10/20 by index"
    );
    assert_eq!(a.image_norm, b.image_norm);

    // Standardised with the train statistics: the train split has mean ~0 and std ~1.
    let n = a.train.images.len() as f64;
    let mean = a.train.images.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = a
        .train
        .images
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
        "{mean} {var}"
    );
}

#[test]
fn pairing_cycles_through_every_recording() {
    // 25 images of digit 3, 10 recordings of 3: each recording used 2 or 3 times, and each
    // block of 10 consecutive images uses all 10 recordings once.
    let images: Vec<(usize, u8)> = (0..25).map(|i| (i, 3)).collect();
    let recs: Vec<(usize, u8)> = (100..110).map(|r| (r, 3)).chain([(7, 4)]).collect();
    let p = pair_split(&images, &recs, Split::Train, 9).unwrap();
    for block in p.chunks(10).take(2) {
        let mut b = block.to_vec();
        b.sort_unstable();
        assert_eq!(b, (100..110).collect::<Vec<_>>());
    }
    assert_eq!(p, pair_split(&images, &recs, Split::Train, 9).unwrap());
    assert_ne!(p, pair_split(&images, &recs, Split::Train, 10).unwrap());
    // A digit without a recording in the split is an error naming it.
    let e = pair_split(&[(0, 5)], &recs, Split::Test, 1).unwrap_err();
    assert!(e.to_string().contains("no recording of 5"), "{e}");
}

#[test]
fn missing_data_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let paths = AvDigitsPaths::under(dir.path());
    assert_eq!(paths.missing().len(), 3);
}
