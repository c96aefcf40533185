"""PyTorch side of `bench/src/bin/models.rs`: forward + backward step time of torchvision's
ResNet-18 (train mode, 1000 classes, cross-entropy) on the CPU with a fixed thread count.

Usage: python torch_cpu.py --threads 2 --steps 3 --shapes 32x224 8x224
Prints {"torch": version, "threads": n, "rows": [{"batch", "size", "ms"}]} as JSON on
stdout: `ms` is the median over `--steps` timed steps after one untimed warm-up step; a step
is forward, loss, backward (no optimiser update), gradients reset to None before each step.
"""
import argparse
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--shapes", nargs="+", default=["32x224"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1000).train()
    rows = []
    for s in args.shapes:
        b, r = (int(v) for v in s.split("x"))
        rows.append({"batch": b, "size": r, "ms": round(step_ms(model, b, r, args.steps), 1)})
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}))


if __name__ == "__main__":
    main()
