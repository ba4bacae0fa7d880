"""The recipe's stages on one network, in order: each takes the last one's result.

Every step of the recipe is the library's public API (``softshare.torch``:
``MixturePrior.from_weights``, the prior's penalty, ``Chooser``,
``FineTuner``, ``save_compressed``); what is the demo's own is the
schedule, the learning rates and the bounds on the components' widths.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .. import compress
from ._loop import _check_finite, _error, _is_check, _snapshot, _steps
from ._setup import Finetuned, Quantized, Retrained, Setup, Trained

if TYPE_CHECKING:
    from pathlib import Path

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
            _check_finite(model, "pretraining", step)
            err = _error(model, s.x_va, s.y_va)
            if err <= best[0]:
                best = (err, _snapshot(model))
            bar.update(step, f"val err {100 * err:.2f} %")
        else:
            bar.update(step)
    if best[1] is not None:  # no steps: keep the initial weights
        model.load_state_dict(best[1])
    return Trained(s.params(), _error(model, s.x_te, s.y_te))


def retrain_with_prior(s: Setup) -> Retrained:
    """2. Retrain with a learnt mixture prior; keep the best quantized check on validation."""
    import torch
    import torch.nn.functional as F

    import softshare.torch as sst

    model, cfg, total = s.model, s.cfg, s.sched.retrain
    prior = sst.MixturePrior.from_weights(
        model,
        cfg.n_components,
        pi_zero=cfg.pi_zero,
        spread=cfg.spread,
        sigma_std=cfg.init_sigma,
        max_sigma_fraction=cfg.max_sigma_fraction,
        hyperprior=compress.HyperPrior(),
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
    history = []
    val_error = lambda: _error(model, s.x_va, s.y_va)
    budget = None
    if cfg.error_budget is not None:  # continuation: tau raised while validation allows
        budget = sst.ErrorBudget(
            val_error,
            lam,
            budget=cfg.error_budget,
            grow=cfg.budget_grow,
            quantized=cfg.budget_quantized,
            warmup=cfg.budget_warmup,
            settle=cfg.budget_settle,
        )
    chooser = sst.Chooser(val_error)
    bar, every = s.bar("retrain ", total), s.sched.every(total)
    model.train()
    for step, idx in _steps(n_train, cfg.batch_size, s.gen, total, s.device):
        opt.zero_grad()
        lam = budget.lam if budget is not None else lam
        loss = F.cross_entropy(model(s.x_tr[idx]), s.y_tr[idx]) + prior(model, lam)
        loss.backward()
        opt.step()
        # No component swallows the outliers: the non-zero ones never exceed
        # max_sigma_fraction of the largest weight; the zero one starts wide (to
        # pull small weights in) and narrows to that bound over the first half.
        prior.bound_widths_(step / total)
        if not _is_check(step, every, total):
            bar.update(step)
            continue
        _check_finite(model, "retraining with the prior", step)
        mix = prior.mixture()
        history.append((step + 1, mix.mu.copy(), mix.sigma.copy()))
        if budget is not None:
            done = budget.check(model, prior, progress=(step + 1) / total)
            status = f"tau {done.lam * n_train:.3g} val err {100 * done.error:.2f} %"
            bar.update(step, f"{status} {done.file_bytes} B")
            continue
        if step + 1 > total // 2:  # choose among settled mixtures
            chooser.keep_if_best(model, prior, quantized=True)
        bar.update(step, f"components {mix.n_components}")
    if budget is not None:
        budget.restore_best(model, prior)
    else:
        chooser.restore_best(model, prior)
    return Retrained(s.params(), _error(model, s.x_te, s.y_te), prior, history, budget)


def merge_and_quantize(s: Setup, retrained: Retrained) -> Quantized:
    """3. Merge and prune components, 4. quantize every weight to its component's mean.

    :meth:`softshare.torch.Chooser.choose_quantization_`: candidates are each
    merge threshold, each pruning bound (components holding fewer weights are
    pruned) and assignment with or without the mixing proportions (MAP or
    likelihood); of those within ``cfg.merge_tolerance`` of the lowest
    validation error, the one whose compressed file is smallest. The prior is
    merged in place; the model keeps its float weights.
    """
    import softshare.torch as sst

    model, prior = s.model, retrained.prior
    chooser = sst.Chooser(lambda: _error(model, s.x_va, s.y_va))
    choice = chooser.choose_quantization_(
        model,
        prior,
        thresholds=(0.0, 0.25, 1.0, 4.0),
        min_responsibilities=s.cfg.prune_below,
        tolerance=s.cfg.merge_tolerance,
        max_error=retrained.budget.limit if retrained.budget is not None else None,
        mixture=False,
    )
    return Quantized(prior.mixture(), choice.merge, choice.use_pi, choice, prior)


def finetune_quantized(s: Setup, quantized: Quantized) -> Finetuned:
    """5. Quantization-aware fine-tuning (:class:`softshare.torch.FineTuner`); keep the best check.

    The forward pass uses the quantized weights; the gradient reaches the
    shared values (as in Han et al.) and, straight through, float shadow
    weights, reassigned to components every ``cfg.reassign_every`` steps.
    Leaves the model holding the best check's quantized weights.
    """
    import torch.nn.functional as F

    import softshare.torch as sst

    model, cfg, total = s.model, s.cfg, s.sched.finetune
    tuner = sst.FineTuner(
        model,
        quantized.prior,
        quantized.choice.state,
        lr=cfg.finetune_lr,
        lr_weights=cfg.finetune_lr_weights,
        reassign_every=cfg.reassign_every,
        **s.adam,
    )
    chooser = sst.Chooser(lambda: _error(model, s.x_va, s.y_va))
    chooser.keep_if_best(model, state=tuner.state)
    bar, every = s.bar("quantized fine-tuning", total), s.sched.every(total)
    for step, idx in _steps(len(s.y_tr), cfg.batch_size, s.gen, total, s.device):
        tuner.zero_grad()
        F.cross_entropy(model(s.x_tr[idx]), s.y_tr[idx]).backward()
        tuner.step()
        if not _is_check(step, every, total):
            bar.update(step)
            continue
        _check_finite(model, "quantized fine-tuning", step)
        err = chooser.keep_if_best(model, state=tuner.state)
        bar.update(step, f"val err {100 * err:.2f} %")
    state = chooser.restore_best(model)
    assert state is not None  # the check before the first step was kept
    return Finetuned(state, _error(model, s.x_te, s.y_te))


def report_and_export(s: Setup, finetuned: Finetuned, path: Path) -> compress.CompressionReport:
    """6. The storage cost in Han et al.'s format, and the compressed model file at ``path``.

    :func:`softshare.torch.save_compressed` with the fine-tuned state (the
    file holds exactly the model's weights, named as the model names them, so
    ``softshare.torch.load_compressed`` loads it into ``make_model(kind)``;
    without the mixture); the report gains the file's real bytes.
    """
    import softshare.torch as sst

    state = finetuned.state
    written = sst.save_compressed(path, s.model, state=state, mixture=False)
    return state.compression_report().with_file(written)
