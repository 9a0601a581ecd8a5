#!/usr/bin/python3
"""PyTorch FedAvg baseline for tests/bench/bench_sim.sh.

A plain FedAvg loop written the way a researcher would write it in
PyTorch: Fashion-MNIST read from the IDX gz files with Python's gzip
module (pixels / 255, like Roost), an IID partition (a seeded permutation
cut into equal parts), the 2NN MLP 784-200-200-10, and per round: sample
K of N clients without replacement, load the global weights into one
model, run E local epochs of shuffled minibatches of size B with plain SGD
(no momentum), add up the weighted state_dicts and average by examples
(FedAvg), then evaluate the new global model on the 10,000 test images
(Roost's simulator does the same after every round). Clients run one after
another in one process; PyTorch uses its default intra-op thread count
unless --threads is given.

Prints one JSON object per round (round, accuracy, loss, seconds: wall time
of the round including evaluation), then a summary object with "impl":
"torch", the thread count, the median seconds per round after the first,
the final accuracy and the peak RSS in KiB.

usage: torch_fedavg.py [--data DIR] [--clients N] [--per-round K]
                       [--rounds R] [--local-epochs E] [--batch B]
                       [--lr LR] [--seed S] [--threads T]
"""
import argparse
import gzip
import json
import os
import resource
import statistics
import struct
import time

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def load_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8)
    return t.reshape(dims)


def load_split(d, prefix):
    x = load_idx(os.path.join(d, prefix + "-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(d, prefix + "-labels-idx1-ubyte.gz"))
    return x.reshape(x.shape[0], -1).float() / 255.0, y.long()


def mlp():
    return nn.Sequential(nn.Linear(784, 200), nn.ReLU(),
                         nn.Linear(200, 200), nn.ReLU(),
                         nn.Linear(200, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.environ.get(
        "ROOST_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=1,
                    help="evaluate every N rounds and after the last")
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr = load_split(args.data, "train")
    xte, yte = load_split(args.data, "t10k")
    perm = torch.randperm(xtr.shape[0], generator=gen)
    parts = torch.tensor_split(perm, args.clients)

    model = mlp()
    glob = {k: v.clone() for k, v in model.state_dict().items()}
    t_start = time.perf_counter()
    secs = []
    acc = loss = float("nan")
    for rnd in range(1, args.rounds + 1):
        t0 = time.perf_counter()
        chosen = torch.randperm(args.clients, generator=gen)[:args.per_round]
        acc_sd = {k: torch.zeros_like(v) for k, v in glob.items()}
        total = 0
        for c in chosen.tolist():
            idx = parts[c]
            model.load_state_dict(glob)
            opt = torch.optim.SGD(model.parameters(), lr=args.lr)
            xc, yc = xtr[idx], ytr[idx]
            n = xc.shape[0]
            for _ in range(args.local_epochs):
                order = torch.randperm(n, generator=gen)
                for s in range(0, n, args.batch):
                    b = order[s:s + args.batch]
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(model(xc[b]), yc[b]).backward()
                    opt.step()
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    acc_sd[k] += v * n
            total += n
        glob = {k: v / total for k, v in acc_sd.items()}
        model.load_state_dict(glob)
        evaluated = rnd % args.eval_every == 0 or rnd == args.rounds
        if evaluated:
            with torch.no_grad():
                out = model(xte)
                loss = F.cross_entropy(out, yte).item()
                acc = (out.argmax(1) == yte).float().mean().item()
        dt = time.perf_counter() - t0
        secs.append(dt)
        print(json.dumps({"round": rnd,
                          "accuracy": round(acc, 6) if evaluated else None,
                          "loss": round(loss, 6) if evaluated else None,
                          "seconds": round(dt, 4)}),
              flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tail = secs[1:] if len(secs) > 1 else secs
    print(json.dumps({"impl": "torch", "torch": torch.__version__,
                      "threads": torch.get_num_threads(),
                      "rounds": args.rounds,
                      "median_round_s": round(statistics.median(tail), 4),
                      "total_s": round(time.perf_counter() - t_start, 3),
                      "accuracy": round(acc, 6), "peak_rss_kib": rss}),
          flush=True)


if __name__ == "__main__":
    main()
