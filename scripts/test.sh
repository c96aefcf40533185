#!/usr/bin/env bash
# The whole avfuse test suite: formatting, lints, and every test of the workspace, then the
# FFmpeg-backed tests again with the `ffmpeg` features (decoding, cache, CLI, HTTP server).
# Needs a Rust toolchain (rustup; installs the rustfmt/clippy components if missing) and,
# for the media tests, FFmpeg's development packages: on Debian/Ubuntu they are installed
# here with apt-get when missing (as root, or with sudo). Without apt-get the media tests
# are skipped with a message (under CI, i.e. with $CI set, that is an error).
# This is the README's test command, and CI (`.ci/run`) runs exactly it.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# A clean clone gains nothing from incremental compilation; it only costs disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

# --- FFmpeg development packages (for the media, CLI and server tests) ----------------
media_pkgs=(libavformat-dev libavcodec-dev libswscale-dev libswresample-dev libavutil-dev
            libavfilter-dev libavdevice-dev pkg-config clang libclang-dev ffmpeg)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${media_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
elif ! pkg-config --exists libavformat libavcodec libswscale libswresample libavutil 2>/dev/null; then
  missing=("${media_pkgs[@]}")
fi
media_ok=1
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo_cmd=()
    if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo -n); fi
    echo "== installing media test packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "!! apt-get is not available and these packages are missing: ${missing[*]}"
    echo "!! skipping the FFmpeg-backed tests (media decoding, CLI on real MP4s, HTTP server)"
    media_ok=0
    if [ -n "${CI:-}" ]; then
      echo "!! CI must run them: failing" >&2
      exit 1
    fi
  fi
fi

# The FFmpeg feature set, given for the whole workspace so that every dependency resolves
# to the same features as the default build: Burn and the other heavy dependencies are
# compiled once, and only our crates are rebuilt with FFmpeg.
ffmpeg_features=avfuse-media/ffmpeg,avfuse-serve/ffmpeg,avfuse/ffmpeg

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
if [ "$media_ok" = 1 ]; then
  echo "== cargo clippy --features ffmpeg (all targets, -D warnings)"
  cargo clippy --workspace --all-targets --features "$ffmpeg_features" --locked -- -D warnings
fi
echo "== cargo test"
cargo test --workspace --locked
if [ "$media_ok" = 1 ]; then
  # The test targets that exercise FFmpeg: decoding and the shard cache (avfuse-media), the
  # CLI on MP4 clips (avfuse), the HTTP server on loopback (avfuse-serve).
  echo "== cargo test --features ffmpeg: decode, prepare, CLI, HTTP server"
  cargo test --workspace --features "$ffmpeg_features" --locked \
    --test decode --test prepare --test cli --test serve_cli --test serve
fi
if [ -n "${AVFUSE_TEST_WGPU:-}" ]; then
  # Opt-in (it compiles Burn a second time with wgpu, ~30 min on 2 cores, which would double
  # the suite): the CubeCL dropout kernel on a wgpu adapter. Without a GPU that is Mesa's
  # lavapipe (Debian: mesa-vulkan-drivers), a Vulkan driver on the CPU.
  echo "== cargo test --features avfuse-nn/wgpu: the CubeCL dropout kernel (AVFUSE_TEST_WGPU)"
  cargo test --workspace --features avfuse-nn/wgpu --locked --test dropout_cube
fi
echo "== all checks passed"
