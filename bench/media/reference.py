#!/usr/bin/env python3
"""Python reference of the avfuse media pipeline, for bench/media/run.sh.

Same work as crates/avfuse-media/examples/media_bench.rs, the way a Python pipeline does
it: PyAV decodes the video (every frame, as Python pipelines do; only the 32 sampled
frames, np.linspace(0, n - 1, 32).round(), are converted to RGB) and the audio (downmixed
by averaging, resampled to 16 kHz with soxr "HQ", librosa's default); OpenCV's Haar
cascade (haarcascade_frontalface_default.xml, scaleFactor 1.1, minNeighbors 5, minSize
10 % of the shorter side) on a grey copy downscaled to 320 px on every sampled frame; a
1.3-margin square crop resized to 224 with cv2.INTER_AREA (centre crop without a face);
librosa log-mel (64 mels, n_fft 512, win 400, hop 160, fmax 8000, power_to_db top_db 80).

Usage: reference.py OUT.json CLIP.mp4 [CLIP.mp4 ...]
Threads: the caller pins the process (taskset) and sets OMP/OPENBLAS/MKL_NUM_THREADS;
OpenCV and PyAV are set to one thread here.
"""
import json
import multiprocessing as mp
import os
import statistics
import sys
import time

import av
import cv2
import librosa
import numpy as np

REPS = 5
FRAMES = 32
CROP = 224
DETECT_MAX_SIDE = 320
MARGIN = 1.3

cv2.setNumThreads(1)
CASCADE = cv2.CascadeClassifier(
    os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
)


def decode(path):
    with av.open(path) as c:
        vs = c.streams.video[0]
        vs.thread_type = "SLICE"
        vs.codec_context.thread_count = 1
        n = vs.frames or int(round(float(vs.duration * vs.time_base) * float(vs.average_rate)))
        want = np.linspace(0, n - 1, FRAMES).round().astype(int)
        frames = {}
        wanted = set(want.tolist())
        for i, f in enumerate(c.decode(video=0)):
            if i in wanted and i not in frames:
                frames[i] = f.to_ndarray(format="rgb24")
            if i >= want[-1]:
                break
        last = max(frames)
        video = [frames.get(i, frames[last]) for i in want]
    audio = None
    with av.open(path) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            sr = a.codec_context.sample_rate
            chunks = []
            for f in c.decode(audio=0):
                x = f.to_ndarray().astype(np.float32)
                if f.format.is_planar:
                    x = x.mean(axis=0)
                else:
                    x = x.reshape(-1, len(f.layout.channels)).mean(axis=1)
                chunks.append(x)
            y = np.concatenate(chunks)
            audio = librosa.resample(y, orig_sr=sr, target_sr=16000, res_type="soxr_hq")
    return want, video, audio


def faces(video):
    crops, boxes = [], []
    for rgb in video:
        h, w = rgb.shape[:2]
        s = min(1.0, DETECT_MAX_SIDE / max(w, h))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        dw, dh = int(round(w * s)), int(round(h * s))
        small = cv2.resize(gray, (dw, dh), interpolation=cv2.INTER_AREA) if s < 1 else gray
        m = int(round(0.1 * min(dw, dh)))
        dets = CASCADE.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(m, m))
        if len(dets):
            x, y, bw, bh = max(dets, key=lambda d: d[2] * d[3]) / s
            boxes.append([float(x), float(y), float(bw), float(bh)])
            side = min(MARGIN * max(bw, bh), min(w, h))
            cx, cy = x + bw / 2, y + bh / 2
            x0 = int(round(min(max(cx - side / 2, 0), w - side)))
            y0 = int(round(min(max(cy - side / 2, 0), h - side)))
            side = int(round(side))
        else:
            boxes.append(None)
            side = min(w, h)
            x0, y0 = (w - side) // 2, (h - side) // 2
        crops.append(cv2.resize(rgb[y0:y0 + side, x0:x0 + side], (CROP, CROP),
                                interpolation=cv2.INTER_AREA))
    return np.stack(crops), boxes


def mel(audio):
    if audio is None:
        audio = np.zeros(16000, np.float32)
    s = librosa.feature.melspectrogram(
        y=audio, sr=16000, n_fft=512, win_length=400, hop_length=160, window="hann",
        center=True, pad_mode="constant", power=2.0, n_mels=64, fmin=0.0, fmax=8000.0,
        htk=False, norm="slaney")
    return librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=80.0)


def run(path):
    t0 = time.perf_counter()
    want, video, audio = decode(path)
    t1 = time.perf_counter()
    crops, boxes = faces(video)
    t2 = time.perf_counter()
    m = mel(audio)
    t3 = time.perf_counter()
    assert crops.shape == (FRAMES, CROP, CROP, 3) and m.shape[0] == 64
    return {"decode_ms": (t1 - t0) * 1e3, "faces_ms": (t2 - t1) * 1e3,
            "mel_ms": (t3 - t2) * 1e3, "frames": want.tolist(), "boxes": boxes}


def run_quiet(path):
    run(path)


def main():
    out, clips = sys.argv[1], sys.argv[2:]
    res = []
    for c in clips:
        run(c)  # warm-up
        runs = [run(c) for _ in range(REPS)]
        med = {k: statistics.median(r[k] for r in runs) for k in ("decode_ms", "faces_ms", "mel_ms")}
        med["total_ms"] = med["decode_ms"] + med["faces_ms"] + med["mel_ms"]
        print(f"{c}: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()), file=sys.stderr)
        res.append({"clip": os.path.basename(c), **med,
                    "boxes": [{"frame": f, "box": b} for f, b in
                              zip(runs[-1]["frames"], runs[-1]["boxes"]) if b is not None]})
    tasks = [c for c in clips for _ in range(REPS)]
    procs = len(os.sched_getaffinity(0))
    t = time.perf_counter()
    with mp.Pool(procs) as pool:
        pool.map(run_quiet, tasks)
    wall = (time.perf_counter() - t) * 1e3
    doc = {"reps": REPS, "processes": procs, "clips": res,
           "parallel": {"tasks": len(tasks), "wall_ms": wall, "ms_per_clip": wall / len(tasks)},
           "versions": {"av": av.__version__, "opencv": cv2.__version__,
                        "librosa": librosa.__version__, "numpy": np.__version__}}
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
