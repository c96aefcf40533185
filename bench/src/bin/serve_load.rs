//! Load generator of the serving benchmark (`bench/serve/run.sh`), and the maker of its
//! checkpoint.
//!
//! - `serve_load checkpoint --out FILE [--frames T] [--image-size S]`: a randomly
//!   initialised checkpoint with the default model shapes (`avfuse_serve::testing`),
//!   for `T` frames of `S` px (default: `avfuse prepare`'s 32 frames of 224 px).
//! - `serve_load run --url http://127.0.0.1:PORT/v1/predict --file CLIP.mp4 ...`: sends
//!   `--warmup` untimed requests, then exactly `--requests` multipart uploads of the clip
//!   from `--concurrency` concurrent clients (closed loop: each sends its next request when
//!   the previous one is answered), and prints JSON: throughput, latency percentiles,
//!   status counts and transport errors. Loopback addresses only; it stops by itself after
//!   the requests or `--max-seconds`, whichever comes first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a randomly initialised checkpoint.
    Checkpoint {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 32)]
        frames: usize,
        #[arg(long, default_value_t = 224)]
        image_size: usize,
    },
    /// Run the load and print the result as JSON.
    Run {
        /// Prediction endpoint (loopback only).
        #[arg(long)]
        url: String,
        /// The clip to upload.
        #[arg(long)]
        file: PathBuf,
        /// Timed requests.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Untimed requests first (one client).
        #[arg(long, default_value_t = 4)]
        warmup: usize,
        /// Stop after this long whatever is left.
        #[arg(long, default_value_t = 3600.0)]
        max_seconds: f64,
        /// Per-request client timeout, seconds.
        #[arg(long, default_value_t = 300.0)]
        timeout_s: f64,
        /// Name of the server in the output.
        #[arg(long, default_value = "server")]
        label: String,
    },
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One upload; `Ok(status)` or `Err(transport error)`.
async fn send(client: &reqwest::Client, url: &str, name: &str, bytes: &[u8]) -> Result<u16> {
    let part = reqwest::multipart::Part::bytes(bytes.to_vec())
        .file_name(name.to_string())
        .mime_str("video/mp4")?;
    let res = client
        .post(url)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await?;
    let status = res.status().as_u16();
    // Read the whole body: a response counts when it has fully arrived.
    let body = res.bytes().await?;
    if status == 200 {
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if v.get("fake_probability").and_then(|p| p.as_f64()).is_none() {
            bail!("200 without a fake_probability: {v}");
        }
    }
    Ok(status)
}

#[allow(clippy::too_many_arguments)]
async fn run(
    url: String,
    file: PathBuf,
    requests: usize,
    concurrency: usize,
    warmup: usize,
    max_seconds: f64,
    timeout_s: f64,
    label: String,
) -> Result<serde_json::Value> {
    let parsed = reqwest::Url::parse(&url).with_context(|| format!("--url {url}"))?;
    let host = parsed.host_str().unwrap_or_default();
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") {
        bail!("--url {url}: only loopback addresses are load-tested");
    }
    let bytes = Arc::new(std::fs::read(&file).with_context(|| file.display().to_string())?);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "clip.mp4".into());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs_f64(timeout_s))
        .pool_max_idle_per_host(concurrency.max(1))
        .build()?;
    for i in 0..warmup {
        let s = send(&client, &url, &name, &bytes)
            .await
            .with_context(|| format!("warm-up request {i}"))?;
        if s != 200 {
            bail!("warm-up request {i} got HTTP {s}");
        }
    }
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(max_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, name, bytes, next) = (
            client.clone(),
            url.clone(),
            name.clone(),
            bytes.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<(f64, Result<u16, String>)> = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < requests && Instant::now() < deadline {
                let t = Instant::now();
                let r = send(&client, &url, &name, &bytes)
                    .await
                    .map_err(|e| format!("{e:#}"));
                out.push((t.elapsed().as_secs_f64() * 1e3, r));
            }
            out
        }));
    }
    let mut lat_ok = Vec::new();
    let mut lat_all = Vec::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut transport: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        for (ms, r) in t.await? {
            lat_all.push(ms);
            match r {
                Ok(s) => {
                    *statuses.entry(s.to_string()).or_default() += 1;
                    if s == 200 {
                        lat_ok.push(ms);
                    }
                }
                Err(e) => *transport.entry(e).or_default() += 1,
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    lat_ok.sort_by(f64::total_cmp);
    lat_all.sort_by(f64::total_cmp);
    let sent = lat_all.len();
    let ok = lat_ok.len();
    let errors = sent - ok;
    let (p50, p99) = (percentile(&lat_ok, 0.50), percentile(&lat_ok, 0.99));
    Ok(json!({
        "label": label,
        "clip": file.display().to_string(),
        "clip_bytes": bytes.len(),
        "requests_planned": requests,
        "requests_sent": sent,
        "stopped_by_deadline": sent < requests,
        "concurrency": concurrency,
        "warmup": warmup,
        "ok": ok,
        "errors": errors,
        "status_counts": statuses,
        "transport_errors": transport,
        "wall_s": wall,
        "throughput_rps": ok as f64 / wall,
        "latency_ms": {
            "p50": p50,
            "p90": percentile(&lat_ok, 0.90),
            "p99": p99,
            "max": lat_ok.last().copied().unwrap_or(f64::NAN),
            "mean": lat_ok.iter().sum::<f64>() / ok.max(1) as f64,
        },
        "p99_over_p50": p99 / p50,
    }))
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Checkpoint {
            out,
            frames,
            image_size,
        } => {
            let mut spec = avfuse_serve::testing::RandomCheckpoint::tiny(frames, image_size);
            let d = avfuse_train::config::Config::default();
            spec.video_channels = d.model.video.channels.clone();
            spec.audio_channels = d.model.audio.channels.clone();
            spec.embed_dim = d.model.video.embed_dim;
            spec.fusion_dim = d.fusion.dim;
            // bench/serve/torch_server.py mirrors a head with one hidden layer.
            let [hidden] = d.model.head.hidden[..] else {
                anyhow::bail!(
                    "the serving bench mirrors a one-hidden-layer head; the default \
                     model.head.hidden is {:?}",
                    d.model.head.hidden
                );
            };
            spec.head_hidden = hidden;
            spec.build()?.save(&out)?;
            println!(
                "{}",
                json!({"checkpoint": out.display().to_string(), "frames": frames,
                       "image_size": image_size, "video_channels": spec.video_channels,
                       "audio_channels": spec.audio_channels, "embed_dim": spec.embed_dim,
                       "fusion_dim": spec.fusion_dim, "head_hidden": spec.head_hidden})
            );
        }
        Cmd::Run {
            url,
            file,
            requests,
            concurrency,
            warmup,
            max_seconds,
            timeout_s,
            label,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let v = rt.block_on(run(
                url,
                file,
                requests,
                concurrency,
                warmup,
                max_seconds,
                timeout_s,
                label,
            ))?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}
