//! The synthetic data needs fusion: hand-made features (no ML) show that the
//! mouth/audio agreement separates real clips from `Desync` / `AudioSwap`, while
//! audio-only and video-only statistics do not.

use avfuse_media::synth::{ClipGenerator, ClipKind, SynthConfig};
use rayon::prelude::*;

/// Smaller frames than the default keep the debug-mode test fast; all geometry scales.
fn cfg() -> SynthConfig {
    SynthConfig {
        image_size: 32,
        ..SynthConfig::default()
    }
}

struct Features {
    kind: ClipKind,
    /// Per video frame: 255 - mean intensity of a generous central-lower box.
    darkness: Vec<f64>,
    /// Per video frame: mean mel dB over its 4 mel columns.
    energy: Vec<f64>,
    mean_db: f64,
    lead_db: f64,
    audio_power: f64,
}

fn features(g: &ClipGenerator, kind: ClipKind, seed: u64) -> Features {
    let c = g.config();
    let clip = g.generate(kind, seed);
    let n = c.image_size;
    let (x0, x1) = (n * 30 / 100, n * 70 / 100);
    let (y0, y1) = (n * 45 / 100, n * 88 / 100);
    let plane = n * n;
    let darkness = (0..c.frames)
        .map(|t| {
            let f = &clip.frames[t * 3 * plane..(t + 1) * 3 * plane];
            let mut s = 0.0;
            for ch in 0..3 {
                for y in y0..y1 {
                    for x in x0..x1 {
                        s += f64::from(f[ch * plane + y * n + x]);
                    }
                }
            }
            255.0 - s / (3 * (y1 - y0) * (x1 - x0)) as f64
        })
        .collect();
    let m = c.mel_frames();
    let n_mels = c.mel.n_mels;
    let col_mean = |col: usize| {
        (0..n_mels)
            .map(|b| f64::from(clip.mel[b * m + col]))
            .sum::<f64>()
            / n_mels as f64
    };
    let energy = (0..c.frames)
        .map(|t| (4 * t..4 * t + 4).map(col_mean).sum::<f64>() / 4.0)
        .collect();
    let mean_db = clip.mel.iter().map(|&v| f64::from(v)).sum::<f64>() / clip.mel.len() as f64;
    let lead_db = (0..4).map(col_mean).sum::<f64>() / 4.0;
    let audio_power = clip
        .audio
        .iter()
        .map(|&v| f64::from(v).powi(2))
        .sum::<f64>()
        / clip.audio.len() as f64;
    Features {
        kind,
        darkness,
        energy,
        mean_db,
        lead_db,
        audio_power,
    }
}

/// A per-clip scalar statistic.
type Stat = fn(&Features) -> f64;

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt().max(1e-12)
}

/// AUC of `pos` scoring above `neg` by pairwise counting (ties count half).
fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    let mut s = 0.0;
    for p in pos {
        for q in neg {
            s += if p > q {
                1.0
            } else if p == q {
                0.5
            } else {
                0.0
            };
        }
    }
    s / (pos.len() * neg.len()) as f64
}

fn dataset() -> Vec<Features> {
    let g = ClipGenerator::new(&cfg()).unwrap();
    // 160 real, 80 of each fake kind; independent seeds per clip.
    let jobs: Vec<(ClipKind, u64)> = (0..400u64)
        .map(|i| {
            let kind = match i % 5 {
                0 | 1 => ClipKind::Real,
                2 => ClipKind::Desync,
                3 => ClipKind::AudioSwap,
                _ => ClipKind::VisualManipulation,
            };
            (kind, 10_000 + i)
        })
        .collect();
    jobs.par_iter().map(|&(k, s)| features(&g, k, s)).collect()
}

fn stat(data: &[Features], kinds: &[ClipKind], f: impl Fn(&Features) -> f64) -> Vec<f64> {
    data.iter()
        .filter(|d| kinds.contains(&d.kind))
        .map(f)
        .collect()
}

#[test]
fn fusion_is_needed() {
    let data = dataset();
    let real = [ClipKind::Real];
    let av_fakes = [ClipKind::Desync, ClipKind::AudioSwap];
    let all_fakes = ClipKind::FAKES;
    let corr = |d: &Features| pearson(&d.darkness, &d.energy);

    // Audio-visual agreement separates real from desync / audio swap.
    let auc_av = auc(&stat(&data, &real, corr), &stat(&data, &av_fakes, corr));
    let auc_desync = auc(
        &stat(&data, &real, corr),
        &stat(&data, &[ClipKind::Desync], corr),
    );
    let auc_swap = auc(
        &stat(&data, &real, corr),
        &stat(&data, &[ClipKind::AudioSwap], corr),
    );
    let real_corr = stat(&data, &real, corr);
    let mean_real_corr = real_corr.iter().sum::<f64>() / real_corr.len() as f64;
    eprintln!(
        "AV correlation AUC: real vs desync+swap {auc_av:.3} (desync {auc_desync:.3}, swap {auc_swap:.3}); mean real corr {mean_real_corr:.3}"
    );
    assert!(auc_av > 0.9, "AV AUC {auc_av}");
    assert!(auc_desync > 0.85 && auc_swap > 0.85);

    // Audio-only statistics do not separate real from any fakes.
    let audio_stats: [(&str, Stat); 4] = [
        ("mean mel dB", |d| d.mean_db),
        ("mean audio power", |d| d.audio_power),
        ("leading mel dB (first 4 columns)", |d| d.lead_db),
        ("energy std over frames", |d| {
            let m = d.energy.iter().sum::<f64>() / d.energy.len() as f64;
            (d.energy.iter().map(|e| (e - m).powi(2)).sum::<f64>() / d.energy.len() as f64).sqrt()
        }),
    ];
    for (name, f) in audio_stats {
        let a = auc(&stat(&data, &real, f), &stat(&data, &all_fakes, f));
        eprintln!("audio-only {name}: AUC real vs fake {a:.3}");
        assert!((a - 0.5).abs() < 0.1, "audio-only {name} AUC {a}");
    }

    // Video-only statistics do not separate real from desync / audio swap.
    let video_stats: [(&str, Stat); 2] = [
        ("mean mouth darkness", |d| d.darkness.iter().sum::<f64>()),
        ("mouth darkness range", |d| {
            let mx = d.darkness.iter().cloned().fold(f64::MIN, f64::max);
            let mn = d.darkness.iter().cloned().fold(f64::MAX, f64::min);
            mx - mn
        }),
    ];
    for (name, f) in video_stats {
        let a = auc(&stat(&data, &real, f), &stat(&data, &av_fakes, f));
        eprintln!("video-only {name}: AUC real vs desync+swap {a:.3}");
        assert!((a - 0.5).abs() < 0.1, "video-only {name} AUC {a}");
    }
}
