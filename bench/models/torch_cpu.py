"""PyTorch side of `bench/src/bin/models.rs`: forward + backward step time of torchvision's
ResNet-18 (train mode, 1000 classes, cross-entropy) on the CPU with a fixed thread count.

Usage: python torch_cpu.py --threads 2 --steps 3 --shapes 32x224 8x224 [--av-reference PATH]
Prints {"torch": version, "threads": n, "rows": [{"batch", "size", "ms"}]} as JSON on
stdout: `ms` is the median over `--steps` timed steps after one untimed warm-up step; a step
is forward, loss, backward (no optimiser update), gradients reset to None before each step.

With --av-reference (the path of ../shared/bench/torch_reference.py) the output also has
"av": {"ms", "batch", "frames", "size"}: that file's own AVModel class, run on the CPU with
its own step (AdamW lr 1e-4, cross-entropy, zero_grad(set_to_none=True), backward, step) at
its shapes (batch 16, 8 frames of 112x112, mel 80x256), median of --steps after one warm-up.
"""
import argparse
import importlib.util
import json
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision


def step_ms(model, batch, size, steps):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g) - 0.5
    y = torch.arange(batch) % 1000
    times = []
    for i in range(steps + 1):
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        ms = (time.perf_counter() - t) * 1e3
        if i > 0:
            times.append(ms)
    return statistics.median(times)


def av_step_ms(reference, steps, B=16, T=8, res=112):
    spec = importlib.util.spec_from_file_location("torch_reference", reference)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)  # defines classes only; its benchmarks run under __main__
    torch.manual_seed(0)
    m = ref.AVModel().train()
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    video = torch.randn(B, T, 3, res, res)
    mel = torch.randn(B, 1, 80, 256)
    y = torch.randint(0, 2, (B,))
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        loss = F.cross_entropy(m(video, mel), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ms = (time.perf_counter() - t) * 1e3
        if i > 0:
            times.append(ms)
    return {"ms": round(statistics.median(times), 1), "batch": B, "frames": T, "size": res}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--shapes", nargs="+", default=["32x224"])
    ap.add_argument("--av-reference", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1000).train()
    rows = []
    for s in args.shapes:
        b, r = (int(v) for v in s.split("x"))
        rows.append({"batch": b, "size": r, "ms": round(step_ms(model, b, r, args.steps), 1)})
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    if args.av_reference:
        out["av"] = av_step_ms(args.av_reference, args.steps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
