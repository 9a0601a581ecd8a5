#!/usr/bin/python3
"""PyTorch baseline for tests/bench/bench_train.c.

The same models as Roost's presets (same layer shapes, "same" padding),
SGD with the same learning rate and momentum, on pre-batched synthetic
tensors in a tight loop: PyTorch's best case. One BLAS thread and one
intra-op thread (torch.set_num_threads(1) and OPENBLAS_NUM_THREADS=1,
set by the driver before Python starts), so the comparison is per core.

usage: torch_train.py --model mlp|cnn|logreg --batch B [--seconds S]
                      [--reps R]
Prints one JSON object per repetition.
"""
import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def build(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(),
                             nn.Linear(200, 200), nn.ReLU(),
                             nn.Linear(200, 10))
    if name == "cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(),
                             nn.MaxPool2d(2),
                             nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(3136, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    if name == "logreg":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    raise SystemExit("torch_train.py: unknown model " + name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = build(args.model)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr,
                          momentum=args.momentum)
    n_batches = 8
    xs = [torch.rand(args.batch, 1, 28, 28) for _ in range(n_batches)]
    ys = [torch.randint(0, 10, (args.batch,)) for _ in range(n_batches)]

    def run(seconds):
        steps = 0
        t0 = time.perf_counter()
        t = t0
        while t - t0 < seconds:
            for _ in range(8):
                x, y = xs[steps % n_batches], ys[steps % n_batches]
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                steps += 1
            t = time.perf_counter()
        return (t - t0) / steps

    run(0.3)  # warm-up
    for _ in range(args.reps):
        step = run(args.seconds)
        print(json.dumps({"impl": "torch", "torch": torch.__version__,
                          "model": args.model, "batch": args.batch,
                          "samples_per_s": round(args.batch / step, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
