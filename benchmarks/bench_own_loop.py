"""The README's own-loop recipe with the library's defaults against ``softshare demo``'s, on the digits MLP.

Usage::

    python benchmarks/bench_own_loop.py [--seeds 0 1 2] [--threads 1]

Both on the demo's data split (scikit-learn's digits: 1,150 training, 287
validation, 360 test images) and network (``make_model("mlp", 8)``,
64-300-100-10), seeded alike, with the demo's schedule (1,080 pretraining,
7,200 retraining, 1,080 fine-tuning steps of 64 images), learning rates and
prior strength (``lam = 2e-3 / n_train``):

* own loop: what the README's "recipe from your own PyTorch loop" writes:
  ``MixturePrior.from_weights(model)`` with every default, the prior's
  penalty at the strength ``ErrorBudget(quantized=True)`` searches for (its
  default budget, 0.1 pp, from the demo's tau; a check each epoch, adapting
  and competing in retraining's second half), ``bound_widths_(step / steps)`` after each step,
  ``Chooser.choose_quantization_(max_error=budget.limit)``, ``FineTuner``
  (defaults) keeping the best epoch, ``save_compressed`` (the mixture
  stored, as by default);
* demo: ``softshare.demo.run_network("mlp", ...)``.

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


def own_loop(data: demo.Data, seed: int, path: Path) -> None:
    """The README's loop on the digits MLP, the library's defaults throughout."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_val, y_val = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
    model = demo.make_model("mlp", data.side)

    def batches(steps: int) -> Any:
        done = 0
        while True:
            for idx in torch.randperm(len(y), generator=gen).split(CFG.batch_size):
                if done == steps:
                    return
                yield x[idx], y[idx]
                done += 1

    def error() -> float:
        return _error(model, x_val, y_val)

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for xb, yb in batches(CFG.pretrain_steps):  # 1. pretrain
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    prior = sst.MixturePrior.from_weights(model)  # 2. retrain with the prior: defaults
    groups = prior.parameter_groups(
        lr_mu=CFG.lr_mu, lr_log_var=CFG.lr_log_var, lr_logit=CFG.lr_logit
    )
    opt = torch.optim.Adam([{"params": model.parameters()}, *groups], lr=CFG.lr)
    budget = sst.ErrorBudget(error, lam=CFG.tau / len(y), quantized=True)  # searched: 0.1 pp
    epochs = CFG.retrain_steps // 18
    for step, (xb, yb) in enumerate(batches(CFG.retrain_steps)):
        opt.zero_grad()
        (F.cross_entropy(model(xb), yb) + prior(model, budget.lam)).backward()
        opt.step()
        prior.bound_widths_(step / CFG.retrain_steps)  # no component swallows the weights
        if (step + 1) % 18 == 0:
            settled = (step + 1) // 18 > epochs // 2  # the widths have narrowed
            budget.check(model, prior, adapt=settled, keep=settled)
    budget.restore_best(model, prior)
    choice = sst.Chooser(error).choose_quantization_(  # 3.-4. merge, quantize
        model, prior, max_error=budget.limit
    )
    tuner = sst.FineTuner(model, prior, choice.state)  # 5. fine-tune, keep the best epoch
    chooser = sst.Chooser(error)
    for _ in range(CFG.finetune_steps // 18):  # epochs of 18 batches
        for xb, yb in batches(18):
            tuner.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            tuner.step()
        chooser.keep_if_best(model, state=tuner.state)
    state = chooser.restore_best(model)
    sst.save_compressed(path, model, prior, state=state)  # 6. the file


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")
    print("| seed | recipe | ratio (file) | file bytes | val error % | test error % |")
    print("|---:|---|---:|---:|---:|---:|")
    rows: dict[str, list[tuple[float, float, float]]] = {"own loop": [], "demo": []}
    for seed in args.seeds:
        data = demo.load_data(None, seed)
        with tempfile.TemporaryDirectory() as tmp:
            own = Path(tmp) / "own.sws"
            own_loop(data, seed, own)
            demo.run_network("mlp", data, CFG, seed, Path(tmp), progress=False, plots=False)
            for name, path in (("own loop", own), ("demo", Path(tmp) / f"mlp_seed{seed}.sws")):
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
        f"{100 * (mean['own loop'][1] - mean['demo'][1]):+.2f} pp"
    )


if __name__ == "__main__":
    main()
