"""How fast each linear-layer kernel multiplies on this CPU, side by side in one process.

The shapes are BLIP's: its vision encoder's MLP (577 rows, one photo, and 4,616, eight) and a
caption's decoding step (1 row, one photo). Each kernel runs the same product, in turn, on two
threads: torch float32, ONNX Runtime float32 `MatMul`, and the two int8 kernels of
`core.accel.int8` (rows: `MatMulIntegerToFloat` with each row rounded in the graph; blocks:
`MatMulNBits`). It prints the CPU class, the median time of each and its rate (GFLOP/s for
many rows, GB/s of weights read for one row), then one JSON line. What it shows is the ceiling
of a mode on this CPU: a compute-bound layer runs no faster than its kernel's rate.

Run: `python -m bench.bench_kernels [--rounds N]` (about 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import nn

from bench.bench_models import cpu_class_here
from core.accel.int8 import BlockInt8Linear, OnnxLinear, RowInt8Linear
from core.memory import hold_freed_heap

SHAPES = [(577, 768, 3072), (577, 3072, 768), (4616, 768, 3072), (1, 768, 3072)]


def kernels(linear: nn.Linear, threads: int) -> dict[str, Callable[[np.ndarray], object]]:
    layers = {
        "torch float32": linear,
        "onnx float32": OnnxLinear(linear, threads),
        "onnx int8 rows": OnnxLinear(RowInt8Linear.from_linear(linear), threads),
        "onnx int8 blocks": OnnxLinear(BlockInt8Linear.from_linear(linear), threads),
    }
    return {name: partial(_run, layer) for name, layer in layers.items()}


def _run(layer: nn.Module, rows: np.ndarray) -> torch.Tensor:
    return layer(torch.from_numpy(rows))


def measure(rounds: int, threads: int) -> list[dict]:
    torch.manual_seed(0)
    results = []
    for rows, inputs, outputs in SHAPES:
        linear = nn.Linear(inputs, outputs).eval()
        x = np.random.default_rng(0).standard_normal((rows, inputs), dtype=np.float32)
        runs = kernels(linear, threads)
        seconds: dict[str, list[float]] = {name: [] for name in runs}
        with torch.inference_mode():
            for run in runs.values():
                run(x)  # warm-up: weights packed, threads started
            for _ in range(rounds):  # in turn, so the machine's drift hits them all alike
                for name, run in runs.items():
                    began = time.perf_counter()
                    run(x)
                    seconds[name].append(time.perf_counter() - began)
        for name, times in seconds.items():
            median = statistics.median(times)
            rate = (
                2 * rows * inputs * outputs / median / 1e9
                if rows > 1
                else inputs * outputs / median / 1e9  # weights read: a byte each in int8
            )
            results.append(
                {
                    "rows": rows,
                    "in": inputs,
                    "out": outputs,
                    "kernel": name,
                    "ms": median * 1e3,
                    "rate": rate,
                    "unit": "GFLOP/s" if rows > 1 else "G weights/s",
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hold_freed_heap()  # as a process that has loaded models runs (`core.loading`)
    cpu = cpu_class_here()
    results = measure(args.rounds, args.threads)
    print(f"CPU class: {cpu}, {args.threads} threads, {args.rounds} rounds in turn")
    print("| rows × in → out | kernel | median | rate | × torch float32 |")
    print("|---|---|---|---|---|")
    for result in results:
        base = next(
            r["ms"]
            for r in results
            if r["kernel"] == "torch float32"
            and r["rows"] == result["rows"]
            and r["in"] == result["in"]
        )
        print(
            f"| {result['rows']} × {result['in']} → {result['out']} | {result['kernel']} "
            f"| {result['ms']:.2f} ms | {result['rate']:.0f} {result['unit']} "
            f"| {base / result['ms']:.2f}× |"
        )
    print(json.dumps({"cpu_class": cpu, "threads": args.threads, "kernels": results}))


if __name__ == "__main__":
    main()
