#!/usr/bin/env bash
# Media pipeline benchmark: avfuse-media (Rust) against a Python reference (PyAV + OpenCV
# Haar + librosa), side by side in one run, on the real clips of ../shared/data/media.
# Per clip: 32 uniformly sampled frames, face crops 224, 16 kHz log-mel; on one core
# (taskset, one thread everywhere) and on all cores (clips in parallel). Writes
# bench/results/media.json: rows {clip, stage, threads, avfuse_ms, reference_ms, speedup},
# face-box agreement (IoU), the seek-policy measurements, machine, versions, date.
#
# usage: bench/media/run.sh [MEDIA_DIR]     (default: ../shared/data/media)
# Needs: the ffmpeg apt packages (see scripts/test.sh), python3 with venv; creates
# .venv-media (git-ignored) from PyPI on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
media="${1:-$root/../shared/data/media}"
shopt -s nullglob
clips=("$media"/*.mp4)
if [ ${#clips[@]} -eq 0 ]; then
  echo "media bench skipped: no .mp4 clips in $media (the shared real data is absent)"
  exit 0
fi

venv="$root/.venv-media"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q av "opencv-python-headless<5" librosa soxr numpy
fi

target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release --locked -q -p avfuse-media --features ffmpeg --example media_bench
bin="$target/release/examples/media_bench"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
one=(env RAYON_NUM_THREADS=1 AVFUSE_DECODE_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
     MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1 taskset -c 0)
ncpu=$(nproc)
echo "== one core"
"${one[@]}" "$bin" "$tmp/rust1.json" "${clips[@]}"
"${one[@]}" "$venv/bin/python" bench/media/reference.py "$tmp/py1.json" "${clips[@]}"
echo "== all $ncpu cores"
env RAYON_NUM_THREADS="$ncpu" AVFUSE_DECODE_THREADS=1 "$bin" "$tmp/rustN.json" "${clips[@]}"
env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
  "$venv/bin/python" bench/media/reference.py "$tmp/pyN.json" "${clips[@]}"

mkdir -p bench/results
"$venv/bin/python" - "$tmp" "$root/bench/results/media.json" <<'PY'
import datetime, json, os, platform, subprocess, sys
tmp, out = sys.argv[1], sys.argv[2]
load = lambda n: json.load(open(os.path.join(tmp, n)))
r1, p1, rn, pn = load("rust1.json"), load("py1.json"), load("rustN.json"), load("pyN.json")
def cmd(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, check=True).stdout.strip()
    except Exception as e:
        return f"unavailable ({e})"
def iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)
rows, faces = [], []
for rc, pc in zip(r1["clips"], p1["clips"]):
    assert rc["clip"] == pc["clip"]
    for stage, rk, pk in [("decode", "decode_ms", "decode_ms"),
                          ("faces (avfuse: detect every 4th frame)", "faces_ms", "faces_ms"),
                          ("faces (both: detect every frame)", "faces_every_frame_ms", "faces_ms"),
                          ("mel", "mel_ms", "mel_ms"),
                          ("total", "total_ms", "total_ms")]:
        a, b = rc[rk], pc[pk]
        rows.append({"clip": rc["clip"], "stage": stage, "threads": 1,
                     "avfuse_ms": round(a, 2), "reference_ms": round(b, 2),
                     "speedup": round(b / a, 2)})
    rb = {d["frame"]: d["box"] for d in rc["boxes"]}
    pb = {d["frame"]: d["box"] for d in pc["boxes"]}
    both = sorted(set(rb) & set(pb))
    ious = [iou(rb[f], pb[f]) for f in both]
    faces.append({"clip": rc["clip"], "frames": 32, "avfuse_found": len(rb),
                  "reference_found": len(pb), "both_found": len(both),
                  "mean_iou": round(sum(ious) / len(ious), 3) if ious else None,
                  "min_iou": round(min(ious), 3) if ious else None})
a, b = rn["parallel"]["ms_per_clip"], pn["parallel"]["ms_per_clip"]
rows.append({"clip": "all clips, in parallel", "stage": "total per clip (throughput)",
             "threads": rn["rayon_threads"], "avfuse_ms": round(a, 2),
             "reference_ms": round(b, 2), "speedup": round(b / a, 2)})
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
doc = {
    "benchmark": "media pipeline: 32 uniform frames + face crops 224 + 16 kHz log-mel (64 mels)",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform()},
    "versions": {"rustc": cmd("rustc", "--version"), "ffmpeg": cmd("ffmpeg", "-version").splitlines()[0],
                 "python": platform.python_version(), **p1["versions"]},
    "method": "median of %d runs after a warm-up; one core = taskset -c 0 with one thread in "
              "every library; all cores = %d tasks over RAYON_NUM_THREADS=nproc threads vs a "
              "multiprocessing.Pool(nproc)" % (r1["reps"], rn["parallel"]["tasks"]),
    "rows": rows,
    "face_boxes_vs_opencv": faces,
    "seek_policies": [{"clip": c["clip"], **s} for c in r1["clips"] for s in c["seek_policies"]],
}
json.dump(doc, open(out, "w"), indent=1)
for r in rows:
    print(f'{r["clip"]:32s} {r["stage"]:42s} {r["avfuse_ms"]:9.1f} {r["reference_ms"]:9.1f}  x{r["speedup"]}')
for f in faces:
    print(f)
PY
echo "wrote bench/results/media.json"
