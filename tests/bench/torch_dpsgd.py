#!/usr/bin/python3
"""PyTorch 1.13 per-example DP-SGD baselines for tests/bench/bench_dpsgd.c.

The MLP of Roost's "mlp" preset (784-200-200-10), SGD with the same
learning rate and momentum, clip norm C = 1 and noise multiplier 1, on
pre-batched synthetic tensors of a FIXED batch size B (PyTorch's best
case: Roost draws a Poisson batch of expected size B every step). One
BLAS thread and one intra-op thread, so the comparison is per core.

Methods (each is a whole DP-SGD step: per-example norms, clipping, sum,
Gaussian noise N(0, sigma^2 C^2) per coordinate, division by B, update):

  vmap   functorch's vmap(grad(loss)) materialises every example's
         gradient (B x 200k floats), then norms, clip factors and an
         einsum for the clipped sum.
  ghost  the ghost-norm trick by hand: forward hooks keep each Linear
         layer's input a and output z; torch.autograd.grad of the summed
         loss with respect to the outputs gives the per-example backprops
         g without any weight gradient; for a Linear layer example i's
         gradient is g_i a_i^T (+ g_i for the bias), so its squared norm is
         ||g_i||^2 (||a_i||^2 + 1). A second backward of the clip-weighted
         loss sum(min(1, C/||grad_i||) * loss_i) then gives the clipped sum
         in the parameters' .grad.
  plain  ordinary SGD at the same batch, for reference.

The noise is torch.normal (a textbook floating-point sampler on a
non-cryptographic generator, as Opacus uses by default): cheaper than
Roost's secure sampler and not attack-resistant, so this favours PyTorch.

usage: torch_dpsgd.py --batch B [--method vmap,ghost,plain] [--seconds S]
                      [--reps R]
Rates are per second of process CPU time. Prints one JSON object per
method and repetition.
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
from functorch import grad, make_functional, vmap  # noqa: E402

from torch_train import build as build_model  # noqa: E402  (same directory)

CLIP = 1.0
SIGMA = 1.0


def build():
    return build_model("mlp")  # the MLP 784-200-200-10 of bench_train


def plain_step(model, opt):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def add_noise_and_step(params, opt, batch):
    # p.grad holds the clipped sum: noise, then divide by the batch.
    with torch.no_grad():
        for p in params:
            p.grad.add_(torch.normal(0.0, SIGMA * CLIP, size=p.shape))
            p.grad.div_(batch)
    opt.step()


def vmap_step(model, args):
    fmodel, params = make_functional(model)
    params = tuple(nn.Parameter(p.detach().clone()) for p in params)
    opt = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum)

    def loss_one(p, x, y):
        out = fmodel(p, x.unsqueeze(0))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))

    def step(x, y):
        grads = per_example(params, x, y)
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads))
        factor = (CLIP / (norms + 1e-6)).clamp(max=1.0)
        for p, g in zip(params, grads):
            p.grad = torch.einsum("b,b...->...", factor, g)
        add_noise_and_step(params, opt, x.shape[0])
    return step


def ghost_step(model, opt):
    linears = [m for m in model if isinstance(m, nn.Linear)]
    saved = {}

    def keep(mod, inputs, output):
        saved[mod] = (inputs[0], output)

    for lin in linears:
        lin.register_forward_hook(keep)
    params = list(model.parameters())

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        losses = F.cross_entropy(model(x), y, reduction="none")
        outs = [saved[lin][1] for lin in linears]
        # Per-example backprops of every Linear output, no weight grads.
        backprops = torch.autograd.grad(losses.sum(), outs, retain_graph=True)
        with torch.no_grad():
            norms_sq = torch.zeros(x.shape[0])
            for lin, g in zip(linears, backprops):
                a = saved[lin][0]
                norms_sq += g.pow(2).sum(1) * (a.pow(2).sum(1) + 1.0)
            factor = (CLIP / (norms_sq.sqrt() + 1e-6)).clamp(max=1.0)
        (losses * factor).sum().backward()
        add_noise_and_step(params, opt, x.shape[0])
    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--method", default="vmap,ghost,plain")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(1)
    n_batches = 8
    xs = [torch.rand(args.batch, 1, 28, 28) for _ in range(n_batches)]
    ys = [torch.randint(0, 10, (args.batch,)) for _ in range(n_batches)]

    steps_of = {}
    for method in args.method.split(","):
        model = build()
        if method == "vmap":
            steps_of[method] = vmap_step(model, args)
            continue
        opt = torch.optim.SGD(model.parameters(), lr=args.lr,
                              momentum=args.momentum)
        if method == "ghost":
            steps_of[method] = ghost_step(model, opt)
        elif method == "plain":
            steps_of[method] = plain_step(model, opt)
        else:
            raise SystemExit("torch_dpsgd.py: unknown method " + method)

    def run(step, seconds):
        steps = 0
        # Process CPU time, like bench_dpsgd: per core, and robust to
        # other jobs sharing the machine.
        t0 = time.process_time()
        t = t0
        while t - t0 < seconds:
            for _ in range(4):
                step(xs[steps % n_batches], ys[steps % n_batches])
                steps += 1
            t = time.process_time()
        return (t - t0) / steps

    for step in steps_of.values():
        run(step, 0.3)  # warm-up
    for _ in range(args.reps):
        for method, step in steps_of.items():
            t = run(step, args.seconds)
            print(json.dumps({"impl": "torch-" + method,
                              "torch": torch.__version__,
                              "batch": args.batch,
                              "samples_per_s": round(args.batch / t, 1)}),
                  flush=True)


if __name__ == "__main__":
    main()
