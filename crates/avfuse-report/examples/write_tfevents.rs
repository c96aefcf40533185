//! Writes the scalars of `scripts/fixtures/check_tfevents.py` (its `SCALARS`) to a new event
//! file in the directory given as the first argument, for the Python check:
//!
//! ```sh
//! cargo run -p avfuse-report --example write_tfevents -- /tmp/avfuse_tb
//! .venv-torch/bin/python scripts/fixtures/check_tfevents.py check /tmp/avfuse_tb
//! ```

use std::path::PathBuf;

use avfuse_report::EventWriter;

/// (tag, step, value), as in check_tfevents.py.
const SCALARS: [(&str, i64, f32); 10] = [
    ("loss/train", 0, std::f32::consts::LN_2),
    ("loss/train", 1, 0.5),
    ("loss/train", 2, 0.25),
    ("auc/val", 1, 0.75),
    ("auc/val", 2, 0.875),
    ("lr", 0, 0.001),
    ("lr", 1, 0.0005),
    ("lr", 2, 0.0),
    ("loss/train", 300, -1.5),
    ("loss/train", 1 << 40, 1e30),
];

fn main() -> Result<(), avfuse_report::ReportError> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("avfuse_tb"));
    let mut w = EventWriter::create(&dir)?;
    for (tag, step, value) in SCALARS {
        w.add_scalar(tag, value, step)?;
    }
    w.flush()?;
    println!("{}", w.path().display());
    Ok(())
}
