//! Shared helpers of the avfuse benchmarks: timing, the machine description every result
//! file carries, and running a Python reference in the same run.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Median wall time in milliseconds of `iters` calls after `warm` untimed calls.
pub fn median_ms(warm: usize, iters: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warm {
        f();
    }
    let mut ts: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ts.sort_by(f64::total_cmp);
    ts[ts.len() / 2]
}

/// What every result file records about where and when it was measured.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    serde_json::json!({
        "cpu": cpu,
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "rayon_threads": rayon::current_num_threads(),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "avfuse": env!("CARGO_PKG_VERSION"),
        "burn": "0.22.1",
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

/// Find a Python with torch: `$AVFUSE_TORCH_PYTHON`, else `.venv-torch/bin/python` under the
/// repository root, else none (the bench then records avfuse figures only and says so).
pub fn torch_python(repo_root: &Path) -> Option<std::path::PathBuf> {
    if let Ok(p) = std::env::var("AVFUSE_TORCH_PYTHON") {
        return Some(p.into());
    }
    let venv = repo_root.join(".venv-torch/bin/python");
    venv.exists().then_some(venv)
}

/// Run a Python script and parse the JSON it prints on stdout (its stderr is passed through).
pub fn run_python_json(python: &Path, script: &Path, args: &[String]) -> Result<serde_json::Value> {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if !out.status.success() {
        bail!("{} exited with {}", script.display(), out.status);
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing the JSON printed by {}", script.display()))
}

/// Write a JSON result file atomically (temp file + fsync + rename), creating its folder.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(value)? + "\n";
    avfuse_media::io::atomic_write(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
