"""The README's own-loop recipe with the library's defaults against ``softshare demo``'s, on the digits MLP.

Usage::

    python benchmarks/bench_own_loop.py [--seeds 0 1 2] [--threads 1]

Both on the demo's data split (scikit-learn's digits: 1,150 training, 287
validation, 360 test images) and network (``make_model("mlp", 8)``,
64-300-100-10), seeded alike, with the demo's schedule (1,080 pretraining,
7,200 retraining, 1,080 fine-tuning steps of 64 images), learning rates and
prior strength (``lam = 2e-3 / n_train``):

* own loop: what the README's "recipe from your own PyTorch loop"
  (docs/recipe.md) writes: pretraining keeping its best epoch
  (``Chooser.keep_if_best``), ``MixturePrior.from_weights(model)`` with
  every default, the prior's penalty at the strength ``ErrorBudget``
  searches for (its defaults: the float network's error within 0.1 pp of
  pretraining's, from the demo's tau; a check each epoch with
  ``progress=``, so adapting from a tenth of retraining and competing in its
  second half), ``bound_widths_(step / steps)`` after each step,
  ``Chooser.choose_quantization_(max_error=budget.limit, mixture=False)``,
  ``FineTuner`` (defaults) keeping the best epoch (the state before
  fine-tuning competing), ``save_compressed(..., mixture=False)``; plain
  (unfused) Adam, and a validation error as a float32 mean, as the README's
  (``--fused``: Adam's fused kernel, as the demo's, everywhere);
* demo: ``softshare.demo.run_network("mlp", ...)``.

The batches are drawn as the demo draws them (a fresh permutation from a
generator seeded alike at each epoch), so the two runs see the same images
in the same order and differ only where the recipes (or Adam's fused and
unfused arithmetic) do.

Prints, per seed and as means, the ratio from the real ``.sws`` file bytes
(float32 bytes over file bytes) and the validation and test error of the
network loaded back from that file.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import softshare.torch as sst
from softshare import demo

from _timing import machine_line

CFG = demo.Config()  # the demo's schedule and rates


def _error(model: Any, x: Any, y: Any) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) != y).float().mean())


def own_loop(data: demo.Data, seed: int, path: Path, *, fused: bool = False) -> None:
    """The README's loop on the digits MLP, the library's defaults throughout.

    ``fused`` gives every Adam (the two optimizers and the FineTuner's) the
    fused kernel the demo uses; the recipe is the same.
    """
    adam: dict[str, Any] = {"fused": True} if fused else {}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_val, y_val = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
    model = demo.make_model("mlp", data.side)

    def batches(steps: int) -> Any:  # a fresh permutation each epoch, as the demo's
        done = 0
        while done < steps:
            for idx in torch.randperm(len(y), generator=gen).split(CFG.batch_size):
                if done == steps:
                    return
                yield x[idx], y[idx]
                done += 1

    def error() -> float:
        return _error(model, x_val, y_val)

    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **adam)
    best = sst.Chooser(error)
    for step, (xb, yb) in enumerate(batches(CFG.pretrain_steps)):  # 1. pretrain, keep the best
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
        if (step + 1) % 18 == 0:  # epochs of 18 batches
            best.keep_if_best(model)
    best.restore_best(model)
    prior = sst.MixturePrior.from_weights(model)  # 2. retrain with the prior: defaults
    groups = prior.parameter_groups(
        lr_mu=CFG.lr_mu, lr_log_var=CFG.lr_log_var, lr_logit=CFG.lr_logit
    )
    opt = torch.optim.Adam([{"params": model.parameters()}, *groups], lr=CFG.lr, **adam)
    budget = sst.ErrorBudget(error, lam=CFG.tau / len(y))  # searched: 0.1 pp
    for step, (xb, yb) in enumerate(batches(CFG.retrain_steps)):
        opt.zero_grad()
        (F.cross_entropy(model(xb), yb) + prior(model, budget.lam)).backward()
        opt.step()
        prior.bound_widths_(step / CFG.retrain_steps)  # no component swallows the weights
        if (step + 1) % 18 == 0:
            budget.check(model, prior, progress=(step + 1) / CFG.retrain_steps)
    budget.restore_best(model, prior)
    choice = sst.Chooser(error).choose_quantization_(  # 3.-4. merge, quantize
        model, prior, max_error=budget.limit, mixture=False
    )
    tuner = sst.FineTuner(model, prior, choice.state, **adam)  # 5. fine-tune, keep the best
    chooser = sst.Chooser(error)
    chooser.keep_if_best(model, state=tuner.state)
    for _ in range(CFG.finetune_steps // 18):  # epochs of 18 batches
        for xb, yb in batches(18):
            tuner.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            tuner.step()
        chooser.keep_if_best(model, state=tuner.state)
    state = chooser.restore_best(model)
    sst.save_compressed(path, model, prior, state=state, mixture=False)  # 6. the file


def scored(path: Path, data: demo.Data) -> tuple[float, float, float]:
    """Ratio (file), validation and test error of the network loaded back from ``path``."""
    model = demo.make_model("mlp", data.side)
    sst.load_compressed(path, model)
    n = sum(p.numel() for p in model.parameters())
    errs = [
        _error(model, torch.from_numpy(x), torch.from_numpy(y))
        for x, y in ((data.x_val, data.y_val), (data.x_test, data.y_test))
    ]
    return 4 * n / path.stat().st_size, errs[0], errs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--fused", action="store_true", help="the own loop's Adams fused, as the demo's"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    adam = "fused Adam in both" if args.fused else "own loop: unfused Adam (the README's)"
    print(f"torch {torch.__version__}, {args.threads} thread(s), {adam}\n")
    print("| seed | recipe | ratio (file) | file bytes | val error % | test error % |")
    print("|---:|---|---:|---:|---:|---:|")
    rows: dict[str, list[tuple[float, float, float]]] = {"own loop": [], "demo": []}
    same = 0  # seeds whose two files are byte for byte the same
    for seed in args.seeds:
        data = demo.load_data(None, seed)
        with tempfile.TemporaryDirectory() as tmp:
            own = Path(tmp) / "own.sws"
            own_loop(data, seed, own, fused=args.fused)
            demo.run_network("mlp", data, CFG, seed, Path(tmp), progress=False, plots=False)
            theirs = Path(tmp) / f"mlp_seed{seed}.sws"
            same += own.read_bytes() == theirs.read_bytes()
            for name, path in (("own loop", own), ("demo", theirs)):
                ratio, val, test = scored(path, data)
                rows[name].append((ratio, val, test))
                print(
                    f"| {seed} | {name} | {ratio:.1f}x | {path.stat().st_size} | "
                    f"{100 * val:.2f} | {100 * test:.2f} |",
                    flush=True,
                )
    mean = {k: np.mean(v, axis=0) for k, v in rows.items()}
    for name, (ratio, val, test) in mean.items():
        print(f"| mean | {name} | {ratio:.1f}x | | {100 * val:.2f} | {100 * test:.2f} |")
    share = mean["own loop"][0] / mean["demo"][0]
    print(
        f"\nown loop / demo: {share:.0%} of the ratio, validation error "
        f"{100 * (mean['own loop'][1] - mean['demo'][1]):+.2f} pp; the two files the same "
        f"byte for byte on {same} of {len(args.seeds)} seeds"
    )


if __name__ == "__main__":
    main()
