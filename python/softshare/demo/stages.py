"""The recipe's stages on one network, in order: each takes the last one's result."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .. import compress
from .._mixture import Mixture
from ._loop import (
    _error,
    _host,
    _is_check,
    _quantized_val_error,
    _snapshot,
    _steps,
    _val_error_with,
)
from ._setup import Finetuned, Quantized, Retrained, Setup, Trained

__all__ = [
    "Finetuned",
    "Quantized",
    "Retrained",
    "Setup",
    "Trained",
    "finetune_quantized",
    "merge_and_quantize",
    "pretrain",
    "report_and_export",
    "retrain_with_prior",
]


def pretrain(s: Setup) -> Trained:
    """1. Train the network without the prior, keeping the best check on validation.

    With no pretraining steps the initial weights are kept.
    """
    import torch
    import torch.nn.functional as F

    model, cfg, total = s.model, s.cfg, s.sched.pretrain
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **s.adam)
    best: tuple[float, Any] = (math.inf, None)
    bar, every = s.bar("pretrain", total), s.sched.every(total)
    model.train()
    for step, idx in _steps(len(s.y_tr), cfg.batch_size, s.gen, total, s.device):
        opt.zero_grad()
        F.cross_entropy(model(s.x_tr[idx]), s.y_tr[idx]).backward()
        opt.step()
        if _is_check(step, every, total):
            err = _error(model, s.x_va, s.y_va)
            if err <= best[0]:
                best = (err, _snapshot(model))
            bar.update(step, f"val err {err:.3f}")
        else:
            bar.update(step)
    if best[1] is not None:  # no steps: keep the initial weights
        model.load_state_dict(best[1])
    return Trained(s.params(), _error(model, s.x_te, s.y_te))


def retrain_with_prior(s: Setup, pretrained: list[Any]) -> Retrained:
    """2. Retrain with a learnt mixture prior; keep the best quantized check on validation."""
    import torch
    import torch.nn.functional as F

    import softshare.torch as sst

    model, cfg, total = s.model, s.cfg, s.sched.retrain
    flat0 = np.concatenate([p.numpy().ravel() for p in pretrained])
    mix0 = compress.init_mixture(
        flat0,
        cfg.n_components,
        pi_zero=0.999 if cfg.pi_zero is None else cfg.pi_zero,
        spread=cfg.spread,
        sigma=cfg.init_sigma * float(np.std(flat0)),
    )
    prior = sst.MixturePrior.from_mixture(
        mix0, zero_component=True, pi_zero=cfg.pi_zero, hyperprior=compress.HyperPrior()
    ).to(s.device)
    opt = torch.optim.Adam(
        [
            {"params": model.parameters()},
            *prior.parameter_groups(cfg.lr_mu, cfg.lr_log_var, cfg.lr_logit),
        ],
        lr=cfg.lr,
        **s.adam,
    )
    n_train = len(s.y_tr)
    lam = cfg.tau / n_train  # the complexity cost per example, as the cross-entropy is a mean
    span = float(np.max(np.abs(flat0)))
    max_log_var = 2 * math.log(cfg.max_sigma_fraction * span)
    history = []
    best: tuple[float, Any] = (math.inf, None)
    start_log_var0 = float(mix0.log_var[0])
    bar, every = s.bar("retrain ", total), s.sched.every(total)
    model.train()
    for step, idx in _steps(n_train, cfg.batch_size, s.gen, total, s.device):
        # Guard against wide components swallowing outliers: the non-zero ones
        # never exceed max_sigma_fraction of the weights' range; the zero one may
        # start wide (to pull small weights in) and is narrowed to the same
        # bound over the first half of retraining.
        frac = min(1.0, step / max(1, total // 2))
        cap0 = max(max_log_var, (1 - frac) * start_log_var0 + frac * max_log_var)
        opt.zero_grad()
        loss = F.cross_entropy(model(s.x_tr[idx]), s.y_tr[idx]) + prior(model, lam)
        loss.backward()
        opt.step()
        with torch.no_grad():
            prior.log_var[1:].clamp_(max=max_log_var)
            prior.log_var[:1].clamp_(max=cap0)
        if not _is_check(step, every, total):
            bar.update(step)
            continue
        mix = prior.mixture()
        history.append((step + 1, mix.mu.copy(), mix.sigma.copy()))
        if step + 1 > total // 2:  # choose among settled mixtures
            q_err = _quantized_val_error(model, prior, s.x_va, s.y_va)
            if q_err <= best[0]:
                best = (q_err, (_snapshot(model), _snapshot(prior)))
        bar.update(step, f"components {mix.n_components}")
    if best[1] is not None:
        model.load_state_dict(best[1][0])
        prior.load_state_dict(best[1][1])
    return Retrained(s.params(), _error(model, s.x_te, s.y_te), prior, history)


def _export(s: Setup, indices: list[np.ndarray], codebook: np.ndarray) -> dict[str, Any]:
    """The quantized network as :func:`softshare.compress.write_file` takes it, named as the model."""
    names = [n for n, _ in s.model.named_parameters()]
    return compress.export_indices(dict(zip(names, indices)), codebook)


def merge_and_quantize(s: Setup, retrained: Retrained) -> Quantized:
    """3. Merge and prune components, 4. quantize every weight to its component's mean.

    Candidates: each merge threshold, each pruning bound (components holding
    fewer weights are pruned) and assignment with or without the mixing
    proportions (MAP or likelihood). Chosen on validation: of the candidates
    within ``cfg.merge_tolerance`` of the lowest validation error, the one
    whose compressed file is smallest (then the lowest error).
    """
    weights_np = [p.numpy() for p in retrained.weights]
    mix = retrained.prior.mixture()
    candidates = []
    with tempfile.TemporaryDirectory() as tmp:
        for threshold in (0.0, 0.25, 1.0, 4.0):
            for below in s.cfg.prune_below:
                merged_t, report_t = compress.merge_components(
                    mix, weights_np, threshold=threshold, min_responsibility=below
                )
                for use_pi in (True, False):
                    quant_t, idx_t = compress.quantize(weights_np, merged_t, use_pi=use_pi)
                    err = _val_error_with(s.model, quant_t, s.x_va, s.y_va)
                    export = _export(s, idx_t, merged_t.mu.astype(np.float32))
                    size = compress.write_file(Path(tmp) / "candidate.sws", export).file_bytes
                    candidates.append((err, size, merged_t, report_t, use_pi, idx_t))
    low = min(c[0] for c in candidates) + s.cfg.merge_tolerance
    err, _, merged, merge_report, use_pi, indices = min(
        (c for c in candidates if c[0] <= low), key=lambda c: c[:2]
    )
    return Quantized(merged, merge_report, use_pi, indices)


def finetune_quantized(s: Setup, quantized: Quantized) -> Finetuned:
    """5. Quantization-aware fine-tuning; keep the best check on validation.

    The forward pass uses the quantized weights (each weight's MAP component,
    assigned anew every ``cfg.reassign_every`` steps; the zero component
    exactly 0); the gradient reaches the codebook
    values (as in Han et al.) and, straight through, full-precision shadow
    weights, which may move on to another component. Leaves the model holding
    the final quantized weights.
    """
    import torch
    import torch.nn.functional as F

    model, cfg, merged, use_pi = s.model, s.cfg, quantized.mixture, quantized.use_pi
    total = s.sched.finetune
    names = [n for n, _ in model.named_parameters()]
    book_param = torch.nn.Parameter(torch.tensor(merged.mu, dtype=torch.float32, device=s.device))
    nonzero = torch.ones_like(book_param)
    nonzero[0] = 0.0
    shadow = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    opt = torch.optim.Adam(
        [
            {"params": shadow, "lr": cfg.finetune_lr_weights},
            {"params": [book_param], "lr": cfg.finetune_lr},
        ],
        **s.adam,
    )

    def assignment(book: np.ndarray) -> list[np.ndarray]:
        mix_now = Mixture(book.astype(np.float64), merged.log_var, merged.logit)
        return [compress.assign(w, mix_now, use_pi=use_pi) for w in _host(shadow)]

    best_book = merged.mu.astype(np.float32)
    best_idx = [np.asarray(i) for i in quantized.indices]
    best_err = _val_error_with(model, [best_book[i] for i in best_idx], s.x_va, s.y_va)
    bar, every = s.bar("quantized fine-tuning", total), s.sched.every(total)
    idx_now: list[Any] = []
    for step, idx in _steps(len(s.y_tr), cfg.batch_size, s.gen, total, s.device):
        book = book_param * nonzero
        if step % cfg.reassign_every == 0:
            idx_now = [torch.from_numpy(i).to(s.device) for i in assignment(_host([book])[0])]
        params_now = {n: book[i] + (s_ - s_.detach()) for n, i, s_ in zip(names, idx_now, shadow)}
        opt.zero_grad()
        logits = torch.func.functional_call(model, params_now, (s.x_tr[idx],))
        F.cross_entropy(logits, s.y_tr[idx]).backward()
        opt.step()
        if not _is_check(step, every, total):
            bar.update(step)
            continue
        book_now = _host([book_param * nonzero])[0]
        idx_check = assignment(book_now)
        err = _val_error_with(model, [book_now[i] for i in idx_check], s.x_va, s.y_va)
        if err <= best_err:
            best_err, best_book, best_idx = err, book_now.copy(), idx_check
        bar.update(step, f"val err {err:.3f}")
    final = [best_book[i].astype(np.float32) for i in best_idx]
    with torch.no_grad():
        for p, q in zip(model.parameters(), final):
            p.copy_(torch.from_numpy(q))
    return Finetuned(best_book, best_idx, _error(model, s.x_te, s.y_te))


def report_and_export(s: Setup, finetuned: Finetuned, path: Path) -> compress.CompressionReport:
    """6. The storage cost in Han et al.'s format, and the compressed model file at ``path``.

    The file (:func:`softshare.compress.write_file`) names the layers as the
    model does, so ``softshare.torch.load_compressed`` loads it into
    ``make_model(kind)``; the report gains its real bytes.
    """
    names = [n for n, _ in s.model.named_parameters()]
    kinds = {n: ("conv" if p.ndim == 4 else "dense") for n, p in s.model.named_parameters()}
    indices = dict(zip(names, finetuned.indices))
    report = compress.compression_report(indices, finetuned.codebook, kinds=kinds)
    written = compress.write_file(path, _export(s, finetuned.indices, finetuned.codebook))
    return report.with_file(written)
