#!/usr/bin/env python3
"""Python reference of `avfuse serve` for bench/serve/run.sh: FastAPI + PyTorch, the way a
Python deepfake-detection service is usually written.

Same endpoint (`POST /v1/predict`, multipart field `file`; `GET /healthz`), same model
shapes as the avfuse checkpoint of the benchmark (avfuse's AvModel: per-frame CNN
[16, 32, 32] -> 32, mel CNN [16, 32, 32] -> 32 with 4 mel frames per step, per-step concat
fusion 64, MLP head 64 -> 1; masked BatchNorm in eval = BatchNorm times presence), same
windows (consecutive runs of T frames, mean over windows) and the same three model runs
per window (both modalities, video only, audio only) in one batch, and the same
preprocessing budget as close as Python libraries allow:

- PyAV decodes the video once (frames up to the last window) and the whole audio track;
  avfuse decodes each window separately (FFmpeg, seeking where the index allows);
- OpenCV's Haar cascade (the same frontal-face cascade avfuse embeds) on a grey copy
  downscaled to 320 px, on every 4th frame of a window and its last, boxes interpolated in
  between, 1.3 margin square crops resized to the model's side with INTER_AREA (centre crop
  without a face); avfuse runs its own Rust port of the cascade the same way;
- audio downmixed by averaging, resampled to 16 kHz with soxr HQ, librosa log-mel
  (64 mels, n_fft 512, win 400, hop 160, fmax 8000, top_db 80) per window.

The weights are random (seeded): only the cost matters here.

Usage: torch_server.py --port P [--workers N] [--frames T] [--image-size S]
Threads: one per worker process in torch and OpenCV.
"""
import argparse
import os
import sys

FRAMES = int(os.environ.get("AVFUSE_BENCH_FRAMES", "32"))
SIZE = int(os.environ.get("AVFUSE_BENCH_IMAGE_SIZE", "224"))
DETECT_EVERY = 4
DETECT_MAX_SIDE = 320
MARGIN = 1.3
SR = 16000
HOP = 160
N_MELS = 64
FPS_NOMINAL = 25.0
MEL_MEAN, MEL_STD = -40.0, 20.0

if __name__ != "__main__":
    import av
    import cv2
    import librosa
    import numpy as np
    import soxr
    import torch
    import torch.nn as nn
    from fastapi import FastAPI, File, UploadFile
    from fastapi.responses import JSONResponse

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    CASCADE = cv2.CascadeClassifier(
        os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    )

    class ConvBnRelu(nn.Module):
        def __init__(self, cin, cout, k, stride, pad):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x, presence):
            # avfuse's masked BatchNorm in eval: BatchNorm, then absent samples zeroed.
            return torch.relu(self.bn(self.conv(x)) * presence.view(-1, 1, 1, 1))

    class FrameCnn(nn.Module):
        def __init__(self, channels=(16, 32, 32), dim=32):
            super().__init__()
            layers, cin = [], 3
            for i, c in enumerate(channels):
                layers.append(ConvBnRelu(cin, c, 4, 4, 0) if i == 0 else ConvBnRelu(cin, c, 3, 2, 1))
                cin = c
            self.layers = nn.ModuleList(layers)
            self.pool = nn.AdaptiveAvgPool2d(4)
            self.proj = nn.Linear(cin * 16, dim)

        def forward(self, x, presence):
            for layer in self.layers:
                x = layer(x, presence)
            return torch.relu(self.proj(self.pool(x).flatten(1)))

    class MelCnn(nn.Module):
        def __init__(self, channels=(16, 32, 32), dim=32, per_step=4):
            super().__init__()
            strided = per_step.bit_length() - 1
            first = len(channels) - strided
            layers, cin = [], 1
            for i, c in enumerate(channels):
                layers.append(ConvBnRelu(cin, c, 3, (2, 2 if i >= first else 1), 1))
                cin = c
            self.layers = nn.ModuleList(layers)
            self.proj = nn.Linear(cin, dim)

        def forward(self, x, presence):
            for layer in self.layers:
                x = layer(x, presence)
            return torch.relu(self.proj(x.mean(2).transpose(1, 2)))

    class AvModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.video, self.audio = FrameCnn(), MelCnn()
            self.fuse = nn.Linear(64, 64)
            self.head_hidden = nn.Linear(32 + 32 + 64, 64)
            self.head_out = nn.Linear(64, 1)

        def forward(self, frames, mel, presence):
            b, t = frames.shape[:2]
            pv, pa = presence[:, 0], presence[:, 1]
            v = self.video(frames.flatten(0, 1), pv.repeat_interleave(t)).view(b, t, -1)
            v = v * pv.view(-1, 1, 1)
            a = self.audio(mel, pa) * pa.view(-1, 1, 1)
            clip, centred = [], []
            for x in (v, a):
                m = x.mean(1, keepdim=True)
                centred.append(x - m)
                clip.append(m.squeeze(1))
            sync = torch.relu(self.fuse(torch.cat(centred, 2))).mean(1)
            z = torch.cat(clip + [sync], 1)
            return self.head_out(torch.relu(self.head_hidden(z)))

    torch.manual_seed(0)
    MODEL = AvModel().eval()

    def face_boxes(frames):
        """Per-frame face boxes (x, y, w, h) in full-frame pixels, or None (no face)."""
        n = len(frames)
        h, w = frames[0].shape[:2]
        s = min(1.0, DETECT_MAX_SIDE / max(h, w))
        det = {}
        for i in sorted(set(list(range(0, n, DETECT_EVERY)) + [n - 1])):
            g = cv2.cvtColor(frames[i], cv2.COLOR_RGB2GRAY)
            if s < 1.0:
                g = cv2.resize(g, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            mn = max(24, int(0.1 * min(g.shape)))
            found = CASCADE.detectMultiScale(g, scaleFactor=1.1, minNeighbors=5, minSize=(mn, mn))
            if len(found):
                x, y, bw, bh = max(found, key=lambda r: r[2] * r[3])
                det[i] = np.array([x, y, bw, bh], dtype=np.float64) / s
        if not det:
            return None
        keys = sorted(det)
        boxes = []
        for i in range(n):
            lo = max([k for k in keys if k <= i], default=None)
            hi = min([k for k in keys if k >= i], default=None)
            if lo is None:
                boxes.append(det[hi])
            elif hi is None or hi == lo:
                boxes.append(det[lo])
            else:
                f = (i - lo) / (hi - lo)
                boxes.append(det[lo] * (1 - f) + det[hi] * f)
        return boxes

    def crops(frames):
        h, w = frames[0].shape[:2]
        boxes = face_boxes(frames)
        out = np.empty((len(frames), 3, SIZE, SIZE), dtype=np.float32)
        for i, fr in enumerate(frames):
            if boxes is None:
                side = min(h, w)
                x0, y0 = (w - side) / 2, (h - side) / 2
            else:
                x, y, bw, bh = boxes[i]
                side = min(MARGIN * max(bw, bh), min(h, w))
                x0 = min(max(x + bw / 2 - side / 2, 0), w - side)
                y0 = min(max(y + bh / 2 - side / 2, 0), h - side)
            x0, y0, side = int(round(x0)), int(round(y0)), max(1, int(round(side)))
            c = cv2.resize(fr[y0:y0 + side, x0:x0 + side], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
            out[i] = c.transpose(2, 0, 1) / 255.0 - 0.5
        return out

    def decode(f):
        with av.open(f, mode="r") as c:  # an upload is a "w+b" SpooledTemporaryFile
            vs = c.streams.video[0]
            vs.thread_count = 1
            fps = float(vs.average_rate)
            n = vs.frames or int(round(float(vs.duration * vs.time_base) * fps))
            windows = max(1, n // FRAMES)
            want = windows * FRAMES
            frames = []
            for fr in c.decode(video=0):
                frames.append(fr.to_ndarray(format="rgb24"))
                if len(frames) >= want:
                    break
        if not frames:
            raise ValueError("no frames")
        while len(frames) < want:
            frames.append(frames[-1])
        f.seek(0)
        audio = None
        with av.open(f, mode="r") as c:  # an upload is a "w+b" SpooledTemporaryFile
            if c.streams.audio:
                st = c.streams.audio[0]
                rate = st.rate
                chunks = [fr.to_ndarray().astype(np.float32) for fr in c.decode(audio=0)]
                if chunks:
                    if st.format.is_planar or chunks[0].shape[0] > 1:
                        x = np.concatenate(chunks, axis=1).mean(0)
                    else:
                        x = np.concatenate(chunks, axis=1).reshape(-1, st.channels).mean(1)
                    audio = soxr.resample(x, rate, SR, "HQ").astype(np.float32)
        return frames, fps, windows, audio

    def predict_file(f):
        frames, fps, windows, audio = decode(f)
        n_audio = int(round(FRAMES / FPS_NOMINAL * SR))
        used = FRAMES * 4
        vids, mels = [], []
        for k in range(windows):
            first = k * FRAMES
            vids.append(crops(frames[first:first + FRAMES]))
            seg = np.zeros(n_audio, dtype=np.float32)
            if audio is not None:
                s0 = int(round(first / fps * SR))
                part = audio[s0:s0 + n_audio]
                seg[:len(part)] = part
            S = librosa.feature.melspectrogram(
                y=seg, sr=SR, n_fft=512, hop_length=HOP, win_length=400, window="hann",
                center=True, pad_mode="constant", power=2.0, n_mels=N_MELS, fmin=0, fmax=8000)
            db = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=80)
            mels.append((db[:, :used] - MEL_MEAN) / MEL_STD)
        pres = [(1, 1), (1, 0), (0, 1)] if audio is not None else [(1, 0)]
        fr = torch.from_numpy(np.stack([v for v in vids for _ in pres]))
        ml = torch.from_numpy(np.stack([m for m in mels for _ in pres])[:, None].astype(np.float32))
        pr = torch.tensor([p for _ in range(windows) for p in pres], dtype=torch.float32)
        fr = fr * pr[:, 0].view(-1, 1, 1, 1, 1)
        ml = ml * pr[:, 1].view(-1, 1, 1, 1)
        with torch.inference_mode():
            p = torch.sigmoid(MODEL(fr, ml, pr)).view(windows, len(pres)).double()
        main = p[:, 0]
        return {
            "fake_probability": float(main.mean()),
            "per_modality": {
                "video": float(p[:, 1].mean()) if audio is not None else float(main.mean()),
                "audio": float(p[:, 2].mean()) if audio is not None else None,
            },
            "windows": [{"start_s": k * FRAMES / fps, "end_s": (k + 1) * FRAMES / fps,
                         "fake_probability": float(main[k])} for k in range(windows)],
            "audio_present": audio is not None,
        }

    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/v1/predict")
    def predict(file: UploadFile = File(...)):
        try:
            out = predict_file(file.file)
        except Exception as e:  # bad input: a 422 like avfuse's
            return JSONResponse(status_code=422, content={"error": "invalid_media", "detail": str(e)})
        out["path"] = file.filename
        out["label"] = "fake" if out["fake_probability"] >= 0.5 else "real"
        return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--frames", type=int, default=FRAMES)
    ap.add_argument("--image-size", type=int, default=SIZE)
    a = ap.parse_args()
    os.environ["AVFUSE_BENCH_FRAMES"] = str(a.frames)
    os.environ["AVFUSE_BENCH_IMAGE_SIZE"] = str(a.image_size)
    import uvicorn

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("torch_server:app", host="127.0.0.1", port=a.port, workers=a.workers,
                log_level="warning")
