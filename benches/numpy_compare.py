#!/usr/bin/env python3
"""pcsim against numpy + OpenBLAS on the same network, alternately.

One MNIST epoch of 784-256-256-10 (ReLU, softmax cross-entropy, batch 64,
f32, plain SGD), by backprop (lr 0.3, as scenarios/bp-mnist.toml) and by
inference learning (T = 20, gamma 0.2, beta 0.1, lr 0.05, as
scenarios/il-mnist.toml with momentum 0), in numpy and in pcsim, at 1 and 2
threads, in turn, several rounds. Prints every epoch time, min / median per
cell, and the ratios the performance issue asks about. Optional (needs
numpy; not run in CI):

    pip install numpy
    cargo build --release
    python3 benches/numpy_compare.py --data /path/to/mnist [--rounds 3]

The two IL codes run the same algorithm: the plain Euler step of size gamma
(pcsim with algorithm.inference.step_control = "fixed"). "il-lc" times pcsim
with the scenario's default local step control instead (a per-sample
overshoot test before every step, which numpy's loop does not do) against
the same numpy IL epoch; pcsim's energy monitor runs in both.

The numpy side runs in a child process per measurement, with
OPENBLAS_NUM_THREADS (and OMP/MKL) set to the thread count before numpy
loads. Its epoch time, like pcsim's `seconds_per_epoch`, covers shuffling,
batch assembly and training, not data loading or evaluation.
"""

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_idx(path):
    import numpy as np

    for name in (path, path + ".gz"):
        if os.path.exists(name):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(name, "rb") as f:
                data = f.read()
            break
    else:
        sys.exit(f"missing {path}[.gz]: pass --data DIR with the MNIST IDX files")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def numpy_epoch(algo, data_dir, seed=1):
    """One epoch in numpy; returns (seconds, test accuracy)."""
    import numpy as np

    f32 = np.float32
    x = load_idx(os.path.join(data_dir, "train-images-idx3-ubyte")).reshape(-1, 784)
    x = (x.astype(f32) / f32(255.0))
    labels = load_idx(os.path.join(data_dir, "train-labels-idx1-ubyte"))
    y = np.zeros((len(labels), 10), dtype=f32)
    y[np.arange(len(labels)), labels] = 1
    tx = load_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte")).reshape(-1, 784)
    tx = tx.astype(f32) / f32(255.0)
    tl = load_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte"))
    rng = np.random.default_rng(seed)
    sizes = [784, 256, 256, 10]
    W = [(rng.standard_normal((o, i)) * np.sqrt(2.0 / i)).astype(f32) for i, o in zip(sizes, sizes[1:])]
    b = [np.zeros(o, dtype=f32) for o in sizes[1:]]

    def relu(z):
        return np.maximum(z, 0)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    batch = 64
    order = rng.permutation(len(x))
    start = time.perf_counter()
    if algo == "bp":
        lr = f32(0.3)
        for s in range(0, len(x), batch):
            idx = order[s : s + batch]
            xb, yb = x[idx], y[idx]
            z1 = xb @ W[0].T + b[0]
            a1 = relu(z1)
            z2 = a1 @ W[1].T + b[1]
            a2 = relu(z2)
            out = softmax(a2 @ W[2].T + b[2])
            d3 = out - yb
            d2 = (d3 @ W[2]) * (z2 > 0)
            d1 = (d2 @ W[1]) * (z1 > 0)
            scale = -lr / f32(len(idx))
            W[2] += scale * (d3.T @ a2)
            b[2] += scale * d3.sum(0)
            W[1] += scale * (d2.T @ a1)
            b[1] += scale * d2.sum(0)
            W[0] += scale * (d1.T @ xb)
            b[0] += scale * d1.sum(0)
    else:
        lr, gamma, beta, steps = f32(0.05), f32(0.2), f32(0.1), 20
        for s in range(0, len(x), batch):
            idx = order[s : s + batch]
            xb, yb = x[idx], y[idx]
            # Feedforward start: hidden errors 0, the output nudged by beta.
            x2 = xb @ W[0].T + b[0]
            f2 = relu(x2)
            u3 = f2 @ W[1].T + b[1]
            x3 = u3.copy()
            f3 = relu(x3)
            u4 = softmax(f3 @ W[2].T + b[2])
            e2 = np.zeros_like(x2)
            e3 = np.zeros_like(x3)
            e4 = beta * (yb - u4)
            for _ in range(steps):
                down3 = e4 @ W[2]
                down2 = e3 @ W[1]
                st2 = gamma * ((x2 > 0) * down2 - e2)
                x2 += st2
                e2 += st2
                st3 = gamma * ((x3 > 0) * down3 - e3)
                x3 += st3
                e3 += st3
                f2 = relu(x2)
                f3 = relu(x3)
                u3 = f2 @ W[1].T + b[1]
                e3 = x3 - u3
                u4 = softmax(f3 @ W[2].T + b[2])
                e4 = beta * (yb - u4)
            scale = lr / (beta * f32(len(idx)))
            W[2] += scale * (e4.T @ f3)
            b[2] += scale * e4.sum(0)
            W[1] += scale * (e3.T @ f2)
            b[1] += scale * e3.sum(0)
            W[0] += scale * (e2.T @ xb)
            b[0] += scale * e2.sum(0)
    seconds = time.perf_counter() - start
    a = relu(relu(tx @ W[0].T + b[0]) @ W[1].T + b[1]) @ W[2].T + b[2]
    return seconds, float((a.argmax(1) == tl).mean())


def run_numpy(algo, threads, data_dir):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    out = subprocess.run(
        [sys.executable, __file__, "--child", algo, "--data", data_dir],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    seconds, acc = json.loads(out.strip().splitlines()[-1])
    return seconds, acc


# Each pcsim cell and the numpy epoch it is compared with.
NUMPY_ALGO = {"bp": "bp", "il": "il", "il-lc": "il"}


def run_pcsim(algo, threads, data_dir, pcsim):
    scenario = os.path.join(ROOT, "scenarios", f"{NUMPY_ALGO[algo]}-mnist.toml")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [pcsim, "run", scenario, "--set", f"data.path={data_dir}",
               "--set", "training.epochs=1", "--threads", str(threads),
               "--out", os.path.join(tmp, "run"), "--force"]
        if algo.startswith("il"):
            cmd += ["--set", "training.momentum=0"]
        if algo == "il":
            cmd += ["--set", "algorithm.inference.step_control=fixed"]
        subprocess.run(cmd, check=True, capture_output=True)
        with open(os.path.join(tmp, "run", "summary.json")) as f:
            s = json.load(f)
    return s["seconds_per_epoch"][0], s["test_accuracy"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "data", "mnist"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pcsim", default=os.path.join(ROOT, "target", "release", "pcsim"))
    ap.add_argument("--algos", default="bp,il,il-lc",
                    help="comma-separated: bp, il (plain step, as numpy), il-lc (pcsim's default step control; numpy's IL epoch is timed once, under il)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    unknown = [x for x in a.algos.split(",") if x not in NUMPY_ALGO]
    if unknown:
        sys.exit(f"--algos: unknown {', '.join(unknown)}; choose from {', '.join(NUMPY_ALGO)}")
    if a.child:
        print(json.dumps(numpy_epoch(a.child, a.data)))
        return
    times = {}
    for r in range(a.rounds):
        for algo in a.algos.split(","):
            for threads in (1, 2):
                for who in ("numpy", "pcsim"):
                    if who == "numpy" and NUMPY_ALGO[algo] != algo:
                        continue
                    if who == "numpy":
                        sec, acc = run_numpy(algo, threads, a.data)
                    else:
                        sec, acc = run_pcsim(algo, threads, a.data, a.pcsim)
                    times.setdefault((algo, who, threads), []).append(sec)
                    print(f"round {r + 1} {algo:5} {who:5} {threads} thread(s): {sec:7.3f} s/epoch (test accuracy {100 * acc:.2f} %)", flush=True)
    print("\nmin / median seconds per epoch")
    med = {}
    for key, v in sorted(times.items()):
        med[key] = statistics.median(v)
        print(f"  {key[0]:5} {key[1]:5} {key[2]} thread(s): {min(v):.3f} / {med[key]:.3f}")
    print("\nratios of medians")
    for algo in a.algos.split(","):
        p1, p2 = med[(algo, "pcsim", 1)], med[(algo, "pcsim", 2)]
        n2 = med.get((NUMPY_ALGO[algo], "numpy", 2))
        if n2 is None:
            print(f"  {algo}: no numpy epoch to compare with (add {NUMPY_ALGO[algo]} to --algos)")
            continue
        print(f"  {algo}: pcsim 2 threads / numpy 2 threads = {p2 / n2:.2f}; pcsim 1 / 2 threads speed-up = {p1 / p2:.2f}x")


if __name__ == "__main__":
    main()
