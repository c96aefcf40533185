//! Generation throughput at the default size.
//!
//! `cargo run --release -p avfuse-media --example synth_speed -- [clips] [threads]`

use std::time::Instant;

use avfuse_media::synth::{ClipGenerator, SynthConfig, clip_seed, kind_for_seed, synth_split};
use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let threads: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let cfg = SynthConfig::default();
    let g = ClipGenerator::new(&cfg)?;
    pool.install(|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let t = Instant::now();
        let bytes: usize = (0..n as u64)
            .into_par_iter()
            .map(|i| {
                let s = clip_seed(1, "bench", i);
                g.generate(kind_for_seed(s, 0.5), s).frames.len()
            })
            .sum();
        let dt = t.elapsed().as_secs_f64();
        println!(
            "generate only: {n} clips in {dt:.2} s = {:.0} clips/s on {threads} threads ({bytes} frame bytes)",
            n as f64 / dt
        );
        let dir = tempfile::tempdir()?;
        let t = Instant::now();
        let summary = synth_split(&cfg, dir.path(), "train", n, 1, 256, &|_| {})?;
        let dt = t.elapsed().as_secs_f64();
        println!(
            "synth_split (with shard writing): {n} clips in {dt:.2} s = {:.0} clips/s, {} MB",
            n as f64 / dt,
            summary.bytes / 1_000_000
        );
        Ok(())
    })
}
