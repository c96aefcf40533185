#!/usr/bin/env python3
"""PyTorch baseline of the AV digits benchmark (issue 8), variants (c) and (d).

It reads the export written by `avfuse bench av-digits` (or `--export DIR`): the same
degraded, standardised MNIST x FSDD splits, the same initial weights (PyTorch layout), the
same per-epoch batch orders and modality-dropout presence masks, and the training config as
metadata. It rebuilds the same layers in PyTorch:

    per modality: [Conv2d 3x3 (no bias) -> masked BatchNorm -> ReLU] x 3 -> mean over H, W
    fusion: concatenation of the presence-masked embeddings
    head: Linear -> ReLU -> Linear (10 logits)

trains them with cross-entropy, torch.optim.AdamW and the same per-step linear warm-up +
cosine learning rate, and prints JSON on stdout: test and validation accuracy with both /
image-only / audio-only inputs, per-epoch losses, the first batch's loss, timings, versions.
Progress goes to stderr.

Masked BatchNorm (avfuse_nn::MaskedBatchNorm): batch statistics over present samples only
(biased variance for normalising, unbiased for the running variance, momentum 0.1, eps 1e-5,
update skipped with fewer than 2 present samples); absent samples give exact zeros.

Usage: torch_baseline.py --export FILE.safetensors [--threads N]
"""

import argparse
import json
import math
import platform
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open

IMAGE, AUDIO = 0, 1
TEST_INPUTS = {"both": (1.0, 1.0), "image_only": (1.0, 0.0), "audio_only": (0.0, 1.0)}


class MaskedBatchNorm2d(nn.Module):
    """BatchNorm over the present samples (presence m: [B] of 0/1); absent rows give 0."""

    def __init__(self, c, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x, m):
        b, c = x.shape[:2]
        s = x[0, 0].numel()
        mask = m.view(b, 1, 1, 1)
        w, bias = self.weight.view(1, c, 1, 1), self.bias.view(1, c, 1, 1)
        if self.training:
            count = m.sum() * s
            denom = count.clamp_min(1.0)
            mean = (x * mask).sum(dim=(0, 2, 3), keepdim=True) / denom
            centered = (x - mean) * mask
            var = centered.square().sum(dim=(0, 2, 3), keepdim=True) / denom
            y = centered * (w / torch.sqrt(var + self.eps)) + mask * bias
            with torch.no_grad():
                if count.item() >= 2 * s:
                    unbiased = var * denom / (count - 1.0).clamp_min(1.0)
                    self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.view(c))
                    self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased.view(c))
            return y
        scale = self.weight / torch.sqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return (x * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)) * mask


class ConvBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn = MaskedBatchNorm2d(c_out)

    def forward(self, x, m):
        return F.relu(self.bn(self.conv(x), m))


class DigitCnn(nn.Module):
    def __init__(self, channels, strides):
        super().__init__()
        c_in, layers = 1, []
        for c_out, s in zip(channels, strides):
            layers.append(ConvBlock(c_in, c_out, s))
            c_in = c_out
        self.layers = nn.ModuleList(layers)

    def forward(self, x, m):
        for layer in self.layers:
            x = layer(x, m)
        return x.mean(dim=(2, 3))


class DigitsNet(nn.Module):
    """Encoders in modality order [image, audio]; presence [B, 2]."""

    def __init__(self, model_cfg):
        super().__init__()
        im, au = model_cfg["image"], model_cfg["audio"]
        self.encoders = nn.ModuleList(
            [DigitCnn(im["channels"], im["strides"]), DigitCnn(au["channels"], au["strides"])]
        )
        embed = im["channels"][-1] + au["channels"][-1]
        self.hidden = nn.Linear(embed, model_cfg["hidden"])
        self.out = nn.Linear(model_cfg["hidden"], model_cfg["classes"])

    def forward(self, inputs, presence):
        embs = [
            enc(x, presence[:, k]) * presence[:, k : k + 1]
            for k, (enc, x) in enumerate(zip(self.encoders, inputs))
        ]
        return self.out(F.relu(self.hidden(torch.cat(embs, dim=1))))


def lr_at(step, sched):
    """avfuse_train::schedule::WarmupCosine::lr."""
    warm, total = sched["warmup_steps"], sched["total_steps"]
    base, lo = sched["base_lr"], sched["min_lr"]
    if step < warm:
        return base * (step + 1) / warm
    span = max(total - warm, 1)
    t = min((step - warm) / span, 1.0)
    return lo + (base - lo) * (1.0 + math.cos(math.pi * t)) / 2.0


def masked_inputs(split, idx, presence):
    p = presence
    img = split["image"][idx] * p[:, IMAGE].view(-1, 1, 1, 1)
    mel = split["mel"][idx] * p[:, AUDIO].view(-1, 1, 1, 1)
    return [img, mel]


@torch.no_grad()
def accuracy(model, split, inputs, batch):
    model.eval()
    n = split["label"].shape[0]
    right = 0
    for start in range(0, n, batch):
        idx = torch.arange(start, min(start + batch, n))
        p = torch.tensor(TEST_INPUTS[inputs], dtype=torch.float32).expand(len(idx), 2)
        logits = model(masked_inputs(split, idx, p), p)
        right += (logits.argmax(dim=1) == split["label"][idx]).sum().item()
    return right / n


def train(letter, data, tensors, cfg):
    tc = cfg["train"]
    model = DigitsNet(cfg["model"])
    init = {k[len(f"init.{letter}.") :]: v for k, v in tensors.items() if k.startswith(f"init.{letter}.")}
    model.load_state_dict(init, strict=True)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=tc["lr"],
        betas=(tc["beta1"], tc["beta2"]),
        eps=tc["eps"],
        weight_decay=tc["weight_decay"],
    )
    order, presence = tensors["plan.order"], tensors[f"plan.{letter}.presence"]
    tr = data["train"]
    bs, sched = tc["batch_size"], cfg["schedule"]
    step, first_loss, epoch_loss = 0, None, []
    started = time.perf_counter()
    n = tr["label"].shape[0]
    for epoch in range(tc["epochs"]):
        model.train()
        total = 0.0
        for start in range(0, n, bs):
            idx = order[epoch, start : start + bs]
            p = presence[epoch][idx]
            logits = model(masked_inputs(tr, idx, p), p)
            loss = F.cross_entropy(logits, tr["label"][idx])
            for g in opt.param_groups:
                g["lr"] = lr_at(step, sched)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                raise SystemExit(f"({letter}) diverged at step {step}: loss {value}")
            if first_loss is None:
                first_loss = value
            total += value * len(idx)
            step += 1
        epoch_loss.append(total / n)
        print(
            f"torch ({letter}) epoch {epoch + 1}/{tc['epochs']} loss {total / n:.4f} "
            f"({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    seconds = time.perf_counter() - started
    eb = tc["eval_batch_size"]
    return {
        "test": {k: accuracy(model, data["test"], k, eb) for k in TEST_INPUTS},
        "val": {k: accuracy(model, data["val"], k, eb) for k in TEST_INPUTS},
        "epoch_loss": epoch_loss,
        "first_batch_loss": first_loss,
        "train_seconds": seconds,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True, help="the .safetensors file avfuse wrote")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # nothing random is drawn; set for completeness

    with safe_open(args.export, framework="pt") as f:
        cfg = json.loads(f.metadata()["config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    data = {
        s: {"image": tensors[f"{s}.image"], "mel": tensors[f"{s}.mel"], "label": tensors[f"{s}.label"]}
        for s in ("train", "val", "test")
    }
    out = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "variants": {},
    }
    for letter in cfg["variants"]:
        out["variants"][letter] = train(letter, data, tensors, cfg)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
