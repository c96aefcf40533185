"""PyTorch side of `bench/dropout_kernels`: the same variants, shapes, dtypes and thread
count as the Rust side, timed the same way (median of N runs after warm-up).

Usage: python torch_dropout.py N_ELEMENTS THREADS ITERS [cpu|cuda]  -> JSON on stdout.
Timing note: CPU ops are synchronous, so perf_counter around the call is the op's time; on
CUDA every timed call ends with torch.cuda.synchronize() (the Rust side syncs the device
the same way), so launch and completion are both inside the interval.
"""
import json, statistics, sys, time
import torch
import torch.nn.functional as F

n, threads, iters = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
dev = sys.argv[4] if len(sys.argv) > 4 else "cpu"
torch.set_num_threads(threads)
torch.manual_seed(0)


def sync():
    if dev == "cuda":
        torch.cuda.synchronize()


def med(fn, warm=2):
    for _ in range(warm):
        fn()
    sync()
    ts = []
    for _ in range(iters):
        t = time.perf_counter(); fn(); sync(); ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def drop_path(x, p):  # timm.layers.drop_path, scale_by_keep=True
    keep = 1 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep).div_(keep)
    return x * mask


def locked(x, p):  # AWD-LSTM LockedDropout on [T, B, H]
    mask = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)
    return x * mask


# The views used by both sides (n = 2^25 by default): channel variants see
# [N*C = 2^12 * 2^6 channels of 2^7 elements]; locked sees [T = 2^7, B*H = 2^18].
def shapes(n):
    return {
        "dropout": (n,),
        "dropout1d": (1 << 12, 1 << 6, n >> 18),
        "dropout2d": (1 << 12, 1 << 6, 8, n >> 21),
        "dropout3d": (1 << 12, 1 << 6, 2, 4, n >> 21),
        "alpha_dropout": (n,),
        "feature_alpha_dropout": (1 << 12, 1 << 6, n >> 18),
        "drop_path": (1 << 8, n >> 8),
        "locked_dropout": (1 << 7, 1 << 8, n >> 15),
    }


fns = {
    "dropout": lambda x: F.dropout(x, 0.5, True),
    "dropout1d": lambda x: F.dropout1d(x, 0.5, True),
    "dropout2d": lambda x: F.dropout2d(x, 0.5, True),
    "dropout3d": lambda x: F.dropout3d(x, 0.5, True),
    "alpha_dropout": lambda x: F.alpha_dropout(x, 0.5, True),
    "feature_alpha_dropout": lambda x: F.feature_alpha_dropout(x, 0.5, True),
    "drop_path": lambda x: drop_path(x, 0.5),
    "locked_dropout": lambda x: locked(x, 0.5),
}

out = {"torch": torch.__version__, "threads": threads, "n": n, "device": dev, "rows": []}
if dev == "cuda":
    out["gpu"] = torch.cuda.get_device_name(0)
for dt, name in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
    base = torch.randn(n, dtype=dt, device=dev)
    copy_ms = med(lambda: base.clone())
    g = torch.randn(n, dtype=dt, device=dev)
    for variant, shape in shapes(n).items():
        x = base.view(shape)
        fwd = med(lambda: fns[variant](x))
        xg = base.detach().clone().view(shape).requires_grad_(True)
        gv = g.view(shape)

        def fb():
            y = fns[variant](xg)
            y.backward(gv)
            xg.grad = None
        fb_ms = med(fb)
        out["rows"].append({"variant": variant, "dtype": name, "pass": "fwd", "ms": fwd, "copy_ms": copy_ms})
        out["rows"].append({"variant": variant, "dtype": name, "pass": "fwd+bwd", "ms": fb_ms, "copy_ms": copy_ms})
        del xg, gv
        print(f"torch {variant:22} {name:4} fwd {fwd:8.2f} ms  fwd+bwd {fb_ms:8.2f} ms  copy {copy_ms:.2f}", file=sys.stderr, flush=True)
    del base, g
    if dev == "cuda":
        torch.cuda.empty_cache()
print(json.dumps(out))
