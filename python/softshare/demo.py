"""``softshare demo``: the compression recipe end to end on data that ships with a package.

Pretrain a network, retrain it with a learnt Gaussian-mixture prior (the
softshare torch op, a zero component and Gamma hyper-priors), merge and prune
components, quantize every weight to its component's mean, fine-tune the
codebook values (Han et al.), and report test error before and after with the
storage cost in the paper's form. Two networks: a LeNet-300-100-style MLP and
a small LeNet-5-style CNN. Data: scikit-learn's bundled 8x8 digits, or MNIST
(``--data``, ``mnist.npz`` or a folder of IDX files). Every choice the recipe
makes (best epoch, merge threshold) is taken on a validation split of the
training data, never on the test set.

Needs ``pip install "softshare[demo]"`` (torch, scikit-learn, matplotlib).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import compress
from ._mixture import Mixture

# --------------------------------------------------------------------------- data


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    side: int
    name: str


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        msg = f"{path}: not an IDX file of unsigned bytes"
        raise ValueError(msg)
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST from ``mnist.npz`` (keys x_train, y_train, x_test, y_test) or a folder of IDX files."""
    p = Path(path)
    if p.is_file():
        with np.load(p) as z:
            return z["x_train"], z["y_train"], z["x_test"], z["y_test"]
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    found = {}
    for key, stem in names.items():
        cands = [p / stem, p / (stem + ".gz"), p / stem.replace("-idx", ".idx")]
        hit = next((c for c in cands if c.exists()), None)
        if hit is None:
            msg = f"{p}: no {stem}[.gz] (MNIST in IDX form) and not an .npz file"
            raise FileNotFoundError(msg)
        found[key] = _read_idx(hit)
    return found["x_train"], found["y_train"], found["x_test"], found["y_test"]


def load_data(path: str | None, seed: int, *, val_fraction: float = 0.2) -> Data:
    rng = np.random.default_rng(seed)
    if path is None:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]

        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)
        y = digits.target.astype(np.int64)
        order = np.random.default_rng(0).permutation(len(y))  # fixed test set of 360
        test, rest = order[:360], order[360:]
        x_test, y_test, x_rest, y_rest = x[test], y[test], x[rest], y[rest]
        side, name = 8, "digits"
    else:
        x_tr, y_tr, x_test, y_test = load_mnist(path)
        x_rest = (np.asarray(x_tr, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
        x_test = (np.asarray(x_test, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
        y_rest, y_test = np.asarray(y_tr, np.int64), np.asarray(y_test, np.int64)
        side, name = 28, "mnist"
    perm = rng.permutation(len(y_rest))
    n_val = max(1, round(val_fraction * len(perm)))
    val, train = perm[:n_val], perm[n_val:]
    return Data(x_rest[train], y_rest[train], x_rest[val], y_rest[val], x_test, y_test, side, name)


# --------------------------------------------------------------------------- models


def make_model(kind: str, side: int) -> Any:
    from torch import nn

    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(side * side, 300),
            nn.ReLU(),
            nn.Linear(300, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        )
    if kind == "cnn":
        s = side // 4
        return nn.Sequential(
            nn.Unflatten(1, (1, side)),  # (B, side, side) -> (B, 1, side, side)
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * s * s, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )
    msg = f"unknown model kind {kind!r}"
    raise ValueError(msg)


# --------------------------------------------------------------------------- training


@dataclass
class Config:
    pretrain_epochs: int = 60
    retrain_epochs: int = 400
    finetune_epochs: int = 60
    batch_size: int = 64
    n_components: int = 17
    tau: float = 2e-3  # lam = tau / n_train: the prior per training example
    lr: float = 2e-3
    lr_mu: float = 5e-4
    lr_log_var: float = 1e-2
    lr_logit: float = 3e-3
    max_sigma_fraction: float = 0.05
    pi_zero: float | None = 0.999
    init_sigma: float = 2.0  # initial sigma of every component, in units of the weights' std
    finetune_lr: float = 5e-4
    finetune_lr_weights: float = 3e-4
    spread: str = "range"


@dataclass
class RunResult:
    name: str
    seed: int
    error_before: float
    error_after: float
    error_retrained: float
    nonzero_fraction: float
    n_components: int
    compression_ratio: float
    compression_ratio_entropy: float
    compression_ratio_fixed: float
    merge: str
    seconds: float
    n_weights: int
    table: str = field(repr=False, default="")


def _progress(prefix: str, i: int, n: int, extra: str = "", *, enabled: bool = True) -> None:
    if not enabled:
        return
    width = 24
    done = int(width * (i + 1) / n)
    sys.stderr.write(f"\r{prefix} [{'#' * done}{'.' * (width - done)}] {i + 1}/{n} {extra}   ")
    if i + 1 == n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _error(model: Any, x: Any, y: Any) -> float:
    import torch

    with torch.no_grad():
        return float((model(x).argmax(dim=1) != y).float().mean())


def _batches(n: int, batch: int, gen: Any) -> list[Any]:
    import torch

    perm = torch.randperm(n, generator=gen)
    return list(perm.split(batch))


def run_network(
    kind: str, data: Data, cfg: Config, seed: int, out: Path, *, progress: bool, plots: bool
) -> RunResult:
    import torch
    import torch.nn.functional as F

    import softshare.torch as sst

    t_start = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_va, y_va = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
    x_te, y_te = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    model = make_model(kind, data.side)
    label = f"{kind} seed {seed}"

    # 1. pretrain, keeping the best epoch on validation
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best: tuple[float, Any] = (math.inf, None)
    for epoch in range(cfg.pretrain_epochs):
        model.train()
        for idx in _batches(len(y_tr), cfg.batch_size, gen):
            opt.zero_grad()
            F.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
            opt.step()
        err = _error(model, x_va, y_va)
        if err <= best[0]:
            best = (err, _snapshot(model))
        _progress(
            f"{label}: pretrain", epoch, cfg.pretrain_epochs, f"val err {err:.3f}", enabled=progress
        )
    model.load_state_dict(best[1])
    error_before = _error(model, x_te, y_te)
    pretrained = [p.detach().clone() for p in model.parameters()]

    # 2. retrain with the prior
    flat0 = np.concatenate([p.numpy().ravel() for p in pretrained])
    mix0 = compress.init_mixture(
        flat0,
        cfg.n_components,
        pi_zero=0.999,
        spread=cfg.spread,
        sigma=cfg.init_sigma * float(np.std(flat0)),
    )
    prior = sst.MixturePrior.from_mixture(
        mix0, zero_component=True, pi_zero=cfg.pi_zero, hyperprior=compress.HyperPrior()
    )
    opt = torch.optim.Adam(
        [
            {"params": model.parameters()},
            *prior.parameter_groups(cfg.lr_mu, cfg.lr_log_var, cfg.lr_logit),
        ],
        lr=cfg.lr,
    )
    n_train = len(y_tr)
    lam = cfg.tau / n_train  # the complexity cost per example, as the cross-entropy is a mean
    span = float(max(p.abs().max() for p in pretrained))
    max_log_var = 2 * math.log(cfg.max_sigma_fraction * span)
    history = []
    best = (math.inf, None)
    start_log_var0 = float(mix0.log_var[0])
    for epoch in range(cfg.retrain_epochs):
        model.train()
        # Guard against wide components swallowing outliers: the non-zero ones
        # never exceed max_sigma_fraction of the weights' range; the zero one may
        # start wide (to pull small weights in) and is narrowed to the same
        # bound over the first half of retraining.
        frac = min(1.0, epoch / max(1, cfg.retrain_epochs // 2))
        cap0 = max(max_log_var, (1 - frac) * start_log_var0 + frac * max_log_var)
        for idx in _batches(n_train, cfg.batch_size, gen):
            opt.zero_grad()
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx]) + prior(model, lam)
            loss.backward()
            opt.step()
            with torch.no_grad():
                prior.log_var[1:].clamp_(max=max_log_var)
                prior.log_var[:1].clamp_(max=cap0)
        mix = prior.mixture()
        history.append((mix.mu.copy(), mix.sigma.copy()))
        if epoch >= cfg.retrain_epochs // 2:  # choose among settled mixtures
            q_err = _quantized_val_error(model, prior, x_va, y_va)
            if q_err <= best[0]:
                best = (q_err, (_snapshot(model), _snapshot(prior)))
        _progress(
            f"{label}: retrain ",
            epoch,
            cfg.retrain_epochs,
            f"components {mix.n_components}",
            enabled=progress,
        )
    if best[1] is not None:
        model.load_state_dict(best[1][0])
        prior.load_state_dict(best[1][1])
    error_retrained = _error(model, x_te, y_te)
    retrained = [p.detach().clone() for p in model.parameters()]
    weights_np = [p.numpy() for p in retrained]

    # 3. merge and prune, 4. quantize: the merge threshold and whether the
    # assignment uses the mixing proportions (MAP) or the likelihood alone are
    # chosen on validation
    mix = prior.mixture()
    candidates = []
    for threshold in (0.0, 0.25, 1.0, 4.0):
        merged_t, report_t = compress.merge_components(mix, weights_np, threshold=threshold)
        for use_pi in (True, False):
            quant_t, _ = compress.quantize(weights_np, merged_t, use_pi=use_pi)
            err = _val_error_with(model, quant_t, x_va, y_va)
            candidates.append((err, -threshold, not use_pi, merged_t, report_t, use_pi))
    candidates.sort(key=lambda c: c[:3])
    merged, merge_report, use_pi = candidates[0][3], candidates[0][4], candidates[0][5]
    _, indices = compress.quantize(weights_np, merged, use_pi=use_pi)

    # 5. quantization-aware fine-tuning: the forward pass uses the quantized
    # weights (each weight's current MAP component; the zero component exactly
    # 0); the gradient reaches the codebook values (as in Han et al.) and,
    # straight through, full-precision shadow weights, which may move on to
    # another component. The best epoch on validation is kept.
    names = [n for n, _ in model.named_parameters()]
    book_param = torch.nn.Parameter(torch.tensor(merged.mu, dtype=torch.float32))
    nonzero = torch.ones_like(book_param)
    nonzero[0] = 0.0
    shadow = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    opt = torch.optim.Adam(
        [
            {"params": shadow, "lr": cfg.finetune_lr_weights},
            {"params": [book_param], "lr": cfg.finetune_lr},
        ]
    )

    def assignment(book: np.ndarray) -> list[np.ndarray]:
        mix_now = Mixture(book.astype(np.float64), merged.log_var, merged.logit)
        return [compress.assign(s_.detach().numpy(), mix_now, use_pi=use_pi) for s_ in shadow]

    best_book = merged.mu.astype(np.float32)
    best_idx = [np.asarray(i) for i in indices]
    best_err = _val_error_with(model, [best_book[i] for i in best_idx], x_va, y_va)
    for epoch in range(cfg.finetune_epochs):
        for idx in _batches(n_train, cfg.batch_size, gen):
            book = book_param * nonzero
            idx_now = [torch.from_numpy(i) for i in assignment(book.detach().numpy())]
            params_now = {
                n: book[i] + (s_ - s_.detach()) for n, i, s_ in zip(names, idx_now, shadow)
            }
            opt.zero_grad()
            logits = torch.func.functional_call(model, params_now, (x_tr[idx],))
            F.cross_entropy(logits, y_tr[idx]).backward()
            opt.step()
        book_now = (book_param * nonzero).detach().numpy()
        idx_epoch = assignment(book_now)
        err = _val_error_with(model, [book_now[i] for i in idx_epoch], x_va, y_va)
        if err <= best_err:
            best_err, best_book, best_idx = err, book_now.copy(), idx_epoch
        _progress(
            f"{label}: quantized fine-tuning",
            epoch,
            cfg.finetune_epochs,
            f"val err {err:.3f}",
            enabled=progress,
        )
    final_book = best_book
    indices = best_idx
    final = [final_book[i].astype(np.float32) for i in indices]
    params = list(model.parameters())
    with torch.no_grad():
        for p, q in zip(params, final):
            p.copy_(torch.from_numpy(q))
    error_after = _error(model, x_te, y_te)

    # 6. storage cost, export, figures
    names = [n.replace(".", "_") for n, _ in model.named_parameters()]
    kinds = {
        n: ("conv" if p.ndim == 4 else "dense")
        for n, (_, p) in zip(names, model.named_parameters())
    }
    report = compress.compression_report(dict(zip(names, indices)), final_book, kinds=kinds)
    exported: dict[str, np.ndarray] = {
        "codebook": final_book.astype(np.float32),
        **{n: np.asarray(i).astype(np.uint8) for n, i in zip(names, indices)},
    }
    compress.save_quantized(out / f"{kind}_seed{seed}.npz", exported)
    if plots:
        _figures(kind, seed, out, pretrained, retrained, merged, history)
    return RunResult(
        name=kind,
        seed=seed,
        error_before=error_before,
        error_after=error_after,
        error_retrained=error_retrained,
        nonzero_fraction=report.nonzero_fraction,
        n_components=len(np.unique(np.concatenate([np.asarray(i).ravel() for i in indices]))),
        compression_ratio=report.ratio,
        compression_ratio_entropy=32 * report.n_weights / report.bits_entropy,
        compression_ratio_fixed=32 * report.n_weights / report.bits_fixed,
        merge=str(merge_report),
        seconds=time.perf_counter() - t_start,
        n_weights=report.n_weights,
        table=report.to_markdown(),
    )


def _snapshot(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _val_error_with(model: Any, weights: list[np.ndarray], x: Any, y: Any) -> float:
    import torch

    params = {
        n: torch.from_numpy(np.asarray(w, dtype=np.float32))
        for (n, _), w in zip(model.named_parameters(), weights)
    }
    with torch.no_grad():
        out = torch.func.functional_call(model, params, (x,))
    return float((out.argmax(dim=1) != y).float().mean())


def _quantized_val_error(model: Any, prior: Any, x: Any, y: Any) -> float:
    weights = [p.detach().numpy() for p in model.parameters()]
    quant, _ = compress.quantize(weights, prior.mixture())
    return _val_error_with(model, quant, x, y)


def _figures(
    kind: str,
    seed: int,
    out: Path,
    pretrained: list[Any],
    retrained: list[Any],
    mix: Mixture,
    history: list[Any],
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    w0 = np.concatenate([p.numpy().ravel() for p in pretrained])
    w1 = np.concatenate([p.numpy().ravel() for p in retrained])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(w1, bins=200, density=True, alpha=0.6, log=True, label="retrained weights")
    xs = np.linspace(w1.min(), w1.max(), 2000)
    dens = np.sum(
        mix.pi
        * np.exp(-0.5 * (xs[:, None] - mix.mu) ** 2 / mix.var)
        / np.sqrt(2 * np.pi * mix.var),
        axis=1,
    )
    ax.plot(xs, dens, "k-", lw=1, label="mixture density")
    ax.set_ylim(bottom=1e-4)
    ax.set_xlabel("weight")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{kind}_seed{seed}_histogram.png", dpi=110)
    plt.close(fig)

    comp = compress.assign(w1, mix)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(w0, w1, c=comp, s=2, cmap="tab20")
    lo, hi = float(w0.min()), float(w0.max())
    for m_, s_ in zip(mix.mu, mix.sigma):
        ax.axhspan(m_ - 2 * s_, m_ + 2 * s_, color="grey", alpha=0.15)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("pretrained weight")
    ax.set_ylabel("retrained weight")
    fig.tight_layout()
    fig.savefig(out / f"{kind}_seed{seed}_scatter.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = np.arange(len(history))
    for j in range(len(history[0][0])):
        mu_j = np.array([h[0][j] for h in history])
        s_j = np.array([h[1][j] for h in history])
        ax.plot(epochs, mu_j, lw=1)
        ax.fill_between(epochs, mu_j - 2 * s_j, mu_j + 2 * s_j, alpha=0.1)
    ax.set_xlabel("retraining epoch")
    ax.set_ylabel("component mean ± 2 sigma")
    fig.tight_layout()
    fig.savefig(out / f"{kind}_seed{seed}_mixture.png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def _table(rows: list[RunResult]) -> str:
    lines = [
        "| network | seed | error before % | error after % | Δ pp | non-zero % | components | ratio (Huffman) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.seed} | {100 * r.error_before:.2f} | {100 * r.error_after:.2f} | "
            f"{100 * (r.error_after - r.error_before):+.2f} | {100 * r.nonzero_fraction:.2f} | "
            f"{r.n_components} | {r.compression_ratio:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="softshare demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("softshare-demo"),
        help="folder for figures and results.json",
    )
    parser.add_argument("--quick", action="store_true", help="few epochs (about 30 s, for tests)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat the recipe over K seeds")
    parser.add_argument("--data", default=None, help="MNIST as mnist.npz or a folder of IDX files")
    parser.add_argument("--models", nargs="*", default=["mlp", "cnn"], choices=["mlp", "cnn"])
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: all cores)"
    )
    parser.add_argument(
        "--tau", type=float, default=None, help="strength of the prior (per example)"
    )
    parser.add_argument("--retrain-epochs", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print('softshare demo needs PyTorch: pip install "softshare[demo]"', file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    cfg = (
        Config(pretrain_epochs=15, retrain_epochs=40, finetune_epochs=5) if args.quick else Config()
    )
    if args.tau is not None:
        cfg.tau = args.tau
    if args.retrain_epochs is not None:
        cfg.retrain_epochs = args.retrain_epochs
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        data = load_data(args.data, seed)
        for kind in args.models:
            rows.append(
                run_network(
                    kind, data, cfg, seed, args.out, progress=not args.no_progress, plots=True
                )
            )
    print(
        f"\nSoft weight-sharing on {data.name} ({len(data.y_train)} train / {len(data.y_val)} validation / "
        f"{len(data.y_test)} test), {time.perf_counter() - t0:.0f} s\n"
    )
    print(_table(rows))
    summary = []
    for kind in args.models:
        mine = [r for r in rows if r.name == kind]
        mean = {
            k: float(np.mean([getattr(r, k) for r in mine]))
            for k in (
                "error_before",
                "error_after",
                "nonzero_fraction",
                "n_components",
                "compression_ratio",
            )
        }
        summary.append({"name": kind, **mean})
        if len(mine) > 1:
            print(
                f"mean {kind}: error {100 * mean['error_before']:.2f}% -> {100 * mean['error_after']:.2f}% "
                f"({100 * (mean['error_after'] - mean['error_before']):+.2f} pp), {mean['compression_ratio']:.1f}x"
            )
    for r in rows:
        print(f"\n{r.name} seed {r.seed}: {r.merge}\n{r.table}")
    results = {
        "data": data.name,
        "models": [{k: v for k, v in asdict(r).items() if k != "table"} for r in rows],
        "mean": summary,
        "config": asdict(cfg),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nfigures and results.json in {args.out}")
    return 0
