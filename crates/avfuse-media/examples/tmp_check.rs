use avfuse_media::synth::{ClipGenerator, ClipKind, SynthConfig};
use rayon::prelude::*;
fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    let mut s = 0.0;
    for p in pos { for q in neg { s += if p > q { 1.0 } else if p == q { 0.5 } else { 0.0 }; } }
    s / (pos.len() * neg.len()) as f64
}
fn main() {
    let g = ClipGenerator::new(&SynthConfig { image_size: 16, ..SynthConfig::default() }).unwrap();
    let n = 3000u64;
    for kind in ClipKind::FAKES {
        let f = |k: ClipKind, base: u64| -> Vec<(f64, f64, f64)> {
            (0..n).into_par_iter().map(|i| {
                let c = g.generate(k, base + i);
                let p = c.audio.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / c.audio.len() as f64;
                let md = c.mel.iter().map(|&v| v as f64).sum::<f64>() / c.mel.len() as f64;
                let lead: f64 = (0..64).map(|b| c.mel[b * 65] as f64).sum::<f64>() / 64.0;
                (p, md, lead)
            }).collect()
        };
        let r = f(ClipKind::Real, 1_000_000);
        let k = f(kind, 2_000_000);
        let a = |j: usize| auc(&r.iter().map(|x| [x.0, x.1, x.2][j]).collect::<Vec<_>>(), &k.iter().map(|x| [x.0, x.1, x.2][j]).collect::<Vec<_>>());
        println!("{kind}: power {:.3} meandb {:.3} lead {:.3}", a(0), a(1), a(2));
    }
}
