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

/// The repository root: the source tree this binary was built from, or (for a binary copied
/// to another machine, e.g. a GPU host, where that path does not exist) the current
/// directory, which must then be a checkout.
pub fn repo_root() -> std::path::PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built.join("bench").is_dir() {
        built
    } else {
        std::env::current_dir().unwrap_or_else(|_| ".".into())
    }
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

/// A global allocator that counts live heap bytes and their high-water mark, for peak-memory
/// rows of CPU benchmarks (the Flex backend allocates tensors through the global allocator).
///
/// Install it in a benchmark binary with
/// `#[global_allocator] static ALLOC: avfuse_bench::PeakAlloc = avfuse_bench::PeakAlloc::new();`
/// then call [`PeakAlloc::reset_peak`] before the measured region and read
/// [`PeakAlloc::peak_bytes`] after it. Two relaxed atomics per allocation; no locking.
pub struct PeakAlloc {
    live: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
}

impl PeakAlloc {
    /// A counter at zero.
    pub const fn new() -> Self {
        Self {
            live: std::sync::atomic::AtomicUsize::new(0),
            peak: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Bytes allocated and not yet freed.
    pub fn live_bytes(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The largest [`PeakAlloc::live_bytes`] seen since the last reset.
    pub fn peak_bytes(&self) -> usize {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Start a new measurement: the peak becomes the current live bytes.
    pub fn reset_peak(&self) {
        self.peak
            .store(self.live_bytes(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl Default for PeakAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are plain
// atomics updated around it.
unsafe impl std::alloc::GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            let now = self
                .live
                .fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed)
                + layout.size();
            self.peak
                .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        self.live
            .fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = self
                .live
                .fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed)
                + layout.size();
            self.peak
                .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        }
        p
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = self
                    .live
                    .fetch_add(grow, std::sync::atomic::Ordering::Relaxed)
                    + grow;
                self.peak
                    .fetch_max(now, std::sync::atomic::Ordering::Relaxed);
            } else {
                self.live.fetch_sub(
                    layout.size() - new_size,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
        p
    }
}
