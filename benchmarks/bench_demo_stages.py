"""Seconds per 1,000 training images of each stage of ``softshare demo`` on the paper's LeNets.

Usage::

    python benchmarks/bench_demo_stages.py [--steps 200 600 600] [--threads 1]

``softshare.demo.run_network`` on the bundled digits upsampled to 28x28
(bilinear; the digits' split: 1,150 training, 287 validation, 360 test
images) for LeNet-300-100 and LeNet-5-Caffe, with a shortened schedule
(pretrain, retrain and fine-tune steps of 64 images; a validation check
every epoch as in the full run). Prints the "Time per 1,000 training images"
table of the README: each stage's seconds over the images it trained on, and
merge-and-quantize (once) in seconds, with fine-tuning over retraining.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from softshare import demo

from _timing import machine_line


def digits28(seed: int = 0) -> demo.Data:
    """The digits' split, every image upsampled from 8x8 to 28x28 (bilinear)."""
    d = demo.load_data(None, seed)

    def up(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)[:, None]
        return torch.nn.functional.interpolate(t, size=(28, 28), mode="bilinear")[:, 0].numpy()

    return dataclasses.replace(
        d, x_train=up(d.x_train), x_val=up(d.x_val), x_test=up(d.x_test), side=28
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs=3, default=[200, 600, 600])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["lenet-300-100", "lenet-5-caffe"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = digits28()
    pre, re, fine = args.steps
    cfg = demo.Config(
        pretrain_steps=pre,
        retrain_steps=re,
        finetune_steps=fine,
        pretrain_epochs=0,
        retrain_epochs=0,
        finetune_epochs=0,
    )
    print(machine_line())
    print(f"torch {torch.__version__}, {args.threads} thread(s); steps {pre} + {re} + {fine}")
    print(
        "| network | pretrain | retrain (with the prior) | quantized fine-tuning "
        "| fine-tune / retrain | merge and quantize (once) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for kind in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            r = demo.run_network(kind, data, cfg, 0, Path(tmp), progress=False, plots=False)
        per = {
            s: r.stage_seconds[s] / (r.steps[s] * cfg.batch_size / 1000)
            for s in ("pretrain", "retrain", "finetune")
        }
        print(
            f"| {kind} | {per['pretrain']:.3f} | {per['retrain']:.3f} | {per['finetune']:.3f} "
            f"| {per['finetune'] / per['retrain']:.2f}x | {r.stage_seconds['merge']:.2f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
