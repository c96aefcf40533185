#!/usr/bin/env bash
# Serving benchmark: `avfuse serve` against a FastAPI + PyTorch reference
# (bench/serve/torch_server.py), one after the other in one run on this machine, both on
# loopback, both with one worker per core, same model shapes (avfuse prepare's layout:
# 32 frames of 224 px, the default model), same clip: the 4.1 s real talking-face clip of
# ../shared/data/media (skipped cleanly when absent).
# Load: serve_load (bench/src/bin/serve_load.rs), REQUESTS multipart uploads from
# CONCURRENCY closed-loop clients after a warm-up; it stops by itself.
# Writes bench/results/serve.json.
#
# usage: bench/serve/run.sh [REQUESTS] [CONCURRENCY]      (default 2000 16)
# Needs: the ffmpeg apt packages (see scripts/test.sh) and .venv-torch (torch) with
# fastapi uvicorn python-multipart av opencv-python-headless librosa soxr (installed here
# from PyPI when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
requests="${1:-2000}"
concurrency="${2:-16}"
clip="$root/../shared/data/media/talking_face_h264_aac44k.mp4"
if [ ! -f "$clip" ]; then
  echo "serve bench skipped: $clip is absent (the shared real data is not here)"
  exit 0
fi
py="${AVFUSE_TORCH_PYTHON:-$root/.venv-torch/bin/python}"
if [ ! -x "$py" ]; then
  echo "serve bench: no Python with torch at $py (python3 -m venv .venv-torch && .venv-torch/bin/pip install torch)" >&2
  exit 1
fi
"$py" -c "import fastapi, uvicorn, multipart, av, cv2, librosa, soxr" 2>/dev/null ||
  "$py" -m pip install -q fastapi uvicorn python-multipart av "opencv-python-headless<5" librosa soxr

target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release --locked -q -p avfuse --features ffmpeg --bin avfuse
cargo build --release --locked -q -p avfuse-bench --bin serve_load
avfuse="$target/release/avfuse"
load="$target/release/serve_load"
cores=$(nproc)

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_healthy() { # $1 = base url, $2 = pid
  for _ in $(seq 1 600); do
    curl -sf "$1/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { echo "server exited early" >&2; return 1; }
    sleep 0.2
  done
  echo "server did not become healthy" >&2; return 1
}

"$load" checkpoint --out "$tmp/model.avfc" --frames 32 --image-size 224 > "$tmp/model.json"

echo "== avfuse serve ($cores workers)"
port=$(free_port)
"$avfuse" serve --checkpoint "$tmp/model.avfc" --addr "127.0.0.1:$port" --workers "$cores" \
  --queue-depth 64 --request-timeout-s 600 > "$tmp/avfuse.out" 2> "$tmp/avfuse.log" &
pid=$!; pids+=("$pid")
wait_healthy "http://127.0.0.1:$port" "$pid"
"$load" run --url "http://127.0.0.1:$port/v1/predict" --file "$clip" --label avfuse \
  --requests "$requests" --concurrency "$concurrency" --warmup 4 > "$tmp/avfuse.json"
kill -TERM "$pid"; wait "$pid" || true
echo "== FastAPI + PyTorch ($cores workers)"
port=$(free_port)
"$py" bench/serve/torch_server.py --port "$port" --workers "$cores" --frames 32 --image-size 224 \
  > "$tmp/torch.out" 2>&1 &
pid=$!; pids+=("$pid")
wait_healthy "http://127.0.0.1:$port" "$pid"
"$load" run --url "http://127.0.0.1:$port/v1/predict" --file "$clip" --label fastapi_torch \
  --requests "$requests" --concurrency "$concurrency" --warmup 4 > "$tmp/torch.json"
kill -TERM "$pid"; wait "$pid" || true

mkdir -p bench/results
"$py" - "$tmp" "$root/bench/results/serve.json" "$cores" <<'PY'
import datetime, json, os, platform, subprocess, sys
tmp, out, cores = sys.argv[1], sys.argv[2], int(sys.argv[3])
load = lambda n: json.load(open(os.path.join(tmp, n)))
a, t, model = load("avfuse.json"), load("torch.json"), load("model.json")
def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    except Exception as e:
        return f"unavailable ({e})"
import torch, fastapi, uvicorn, av, cv2, librosa
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
res = {
    "benchmark": "serving: POST /v1/predict multipart uploads of one 4.1 s real talking-face clip "
                 "(720x1080 H.264 + AAC 44.1 kHz), closed loop, loopback",
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {"cpu": cpu, "cores": cores, "os": platform.platform()},
    "versions": {"rustc": cmd("rustc", "--version"), "ffmpeg": cmd("ffmpeg", "-version"),
                 "python": platform.python_version(), "torch": torch.__version__,
                 "fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__,
                 "av": av.__version__, "opencv": cv2.__version__, "librosa": librosa.__version__},
    "model": model,
    "setup": {
        "avfuse": f"avfuse serve --workers {cores} --queue-depth 64 (Flex CPU backend); "
                  "per window: FFmpeg decode (seeking), Rust Haar cascade every 4th frame, log-mel",
        "fastapi_torch": f"uvicorn --workers {cores}, torch/OpenCV 1 thread per worker; "
                         "PyAV decodes the video once, OpenCV Haar every 4th frame, librosa log-mel",
        "same": "3 windows of 32 frames, 224 px face crops, 64x129 log-mel, both + video-only + "
                "audio-only runs per window in one batch, mean over windows",
    },
    "target": "zero errors; p99 <= 2 x p50 at 16 concurrent clients",
    "avfuse": a,
    "fastapi_torch": t,
    "throughput_ratio_avfuse_over_torch": a["throughput_rps"] / t["throughput_rps"] if t["throughput_rps"] else None,
}
json.dump(res, open(out, "w"), indent=1)
open(out, "a").write("\n")
for r in (a, t):
    print(f"{r['label']:>14}: {r['ok']}/{r['requests_sent']} ok, {r['errors']} errors, "
          f"{r['throughput_rps']:.3f} req/s, p50 {r['latency_ms']['p50']:.0f} ms, "
          f"p99 {r['latency_ms']['p99']:.0f} ms (p99/p50 {r['p99_over_p50']:.2f})")
PY
