"""The recipe's stages on one network, and what passes between them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import compress
from .._mixture import Mixture
from ._loop import _batches, _error, _progress, _quantized_val_error, _snapshot, _val_error_with
from .models import make_model

if TYPE_CHECKING:
    from pathlib import Path

    from .data import Data
    from .recipe import Config


@dataclass
class Setup:
    """What every stage works on: the model, the data as tensors, the settings, the RNG."""

    model: Any
    x_tr: Any
    y_tr: Any
    x_va: Any
    y_va: Any
    x_te: Any
    y_te: Any
    cfg: Config
    gen: Any  # torch.Generator drawing the batches
    label: str
    progress: bool

    @classmethod
    def build(cls, kind: str, data: Data, cfg: Config, seed: int, *, progress: bool) -> Setup:
        """Seed torch, then make the data's tensors and a fresh model of ``kind``."""
        import torch

        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        x_tr, y_tr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        x_va, y_va = torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)
        x_te, y_te = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
        model = make_model(kind, data.side)
        label = f"{kind} seed {seed}"
        return cls(model, x_tr, y_tr, x_va, y_va, x_te, y_te, cfg, gen, label, progress)

    def bar(self, stage: str, i: int, n: int, extra: str) -> None:
        """Show the progress of ``stage`` (epoch ``i`` of ``n``) when asked to."""
        _progress(f"{self.label}: {stage}", i, n, extra, enabled=self.progress)


@dataclass
class Trained:
    """Weights after a stage of training (detached copies) and the test error then."""

    weights: list[Any]
    error: float


@dataclass
class Retrained(Trained):
    """After retraining with the prior: also the prior and its (mu, sigma) per epoch."""

    prior: Any = None
    history: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


@dataclass
class Quantized:
    """The merged mixture, what merging did, the assignment rule and each weight's component."""

    mixture: Mixture
    merge: compress.MergeReport
    use_pi: bool
    indices: list[np.ndarray]


@dataclass
class Finetuned:
    """The fine-tuned codebook, each weight's index into it, and the test error."""

    codebook: np.ndarray
    indices: list[np.ndarray]
    error: float


def pretrain(s: Setup) -> Trained:
    """1. Train the network without the prior, keeping the best epoch on validation.

    With ``pretrain_epochs=0`` the initial weights are kept.
    """
    import torch
    import torch.nn.functional as F

    model, cfg = s.model, s.cfg
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best: tuple[float, Any] = (math.inf, None)
    for epoch in range(cfg.pretrain_epochs):
        model.train()
        for idx in _batches(len(s.y_tr), cfg.batch_size, s.gen):
            opt.zero_grad()
            F.cross_entropy(model(s.x_tr[idx]), s.y_tr[idx]).backward()
            opt.step()
        err = _error(model, s.x_va, s.y_va)
        if err <= best[0]:
            best = (err, _snapshot(model))
        s.bar("pretrain", epoch, cfg.pretrain_epochs, f"val err {err:.3f}")
    if best[1] is not None:  # no epochs: keep the initial weights
        model.load_state_dict(best[1])
    return Trained([p.detach().clone() for p in model.parameters()], _error(model, s.x_te, s.y_te))


def retrain_with_prior(s: Setup, pretrained: list[Any]) -> Retrained:
    """2. Retrain with a learnt mixture prior; keep the best quantized epoch on validation."""
    import torch
    import torch.nn.functional as F

    import softshare.torch as sst

    model, cfg = s.model, s.cfg
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
    )
    opt = torch.optim.Adam(
        [
            {"params": model.parameters()},
            *prior.parameter_groups(cfg.lr_mu, cfg.lr_log_var, cfg.lr_logit),
        ],
        lr=cfg.lr,
    )
    n_train = len(s.y_tr)
    lam = cfg.tau / n_train  # the complexity cost per example, as the cross-entropy is a mean
    span = float(max(p.abs().max() for p in pretrained))
    max_log_var = 2 * math.log(cfg.max_sigma_fraction * span)
    history = []
    best: tuple[float, Any] = (math.inf, None)
    start_log_var0 = float(mix0.log_var[0])
    for epoch in range(cfg.retrain_epochs):
        model.train()
        # Guard against wide components swallowing outliers: the non-zero ones
        # never exceed max_sigma_fraction of the weights' range; the zero one may
        # start wide (to pull small weights in) and is narrowed to the same
        # bound over the first half of retraining.
        frac = min(1.0, epoch / max(1, cfg.retrain_epochs // 2))
        cap0 = max(max_log_var, (1 - frac) * start_log_var0 + frac * max_log_var)
        for idx in _batches(n_train, cfg.batch_size, s.gen):
            opt.zero_grad()
            loss = F.cross_entropy(model(s.x_tr[idx]), s.y_tr[idx]) + prior(model, lam)
            loss.backward()
            opt.step()
            with torch.no_grad():
                prior.log_var[1:].clamp_(max=max_log_var)
                prior.log_var[:1].clamp_(max=cap0)
        mix = prior.mixture()
        history.append((mix.mu.copy(), mix.sigma.copy()))
        if epoch >= cfg.retrain_epochs // 2:  # choose among settled mixtures
            q_err = _quantized_val_error(model, prior, s.x_va, s.y_va)
            if q_err <= best[0]:
                best = (q_err, (_snapshot(model), _snapshot(prior)))
        s.bar("retrain ", epoch, cfg.retrain_epochs, f"components {mix.n_components}")
    if best[1] is not None:
        model.load_state_dict(best[1][0])
        prior.load_state_dict(best[1][1])
    weights = [p.detach().clone() for p in model.parameters()]
    return Retrained(weights, _error(model, s.x_te, s.y_te), prior, history)


def merge_and_quantize(s: Setup, retrained: Retrained) -> Quantized:
    """3. Merge and prune components, 4. quantize every weight to its component's mean.

    The merge threshold and whether the assignment uses the mixing proportions
    (MAP) or the likelihood alone are chosen on validation.
    """
    weights_np = [p.numpy() for p in retrained.weights]
    mix = retrained.prior.mixture()
    candidates = []
    for threshold in (0.0, 0.25, 1.0, 4.0):
        merged_t, report_t = compress.merge_components(mix, weights_np, threshold=threshold)
        for use_pi in (True, False):
            quant_t, _ = compress.quantize(weights_np, merged_t, use_pi=use_pi)
            err = _val_error_with(s.model, quant_t, s.x_va, s.y_va)
            candidates.append((err, -threshold, not use_pi, merged_t, report_t, use_pi))
    candidates.sort(key=lambda c: c[:3])
    merged, merge_report, use_pi = candidates[0][3], candidates[0][4], candidates[0][5]
    _, indices = compress.quantize(weights_np, merged, use_pi=use_pi)
    return Quantized(merged, merge_report, use_pi, indices)


def finetune_quantized(s: Setup, quantized: Quantized) -> Finetuned:
    """5. Quantization-aware fine-tuning; keep the best epoch on validation.

    The forward pass uses the quantized weights (each weight's current MAP
    component; the zero component exactly 0); the gradient reaches the codebook
    values (as in Han et al.) and, straight through, full-precision shadow
    weights, which may move on to another component. Leaves the model holding
    the final quantized weights.
    """
    import torch
    import torch.nn.functional as F

    model, cfg, merged, use_pi = s.model, s.cfg, quantized.mixture, quantized.use_pi
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
    best_idx = [np.asarray(i) for i in quantized.indices]
    best_err = _val_error_with(model, [best_book[i] for i in best_idx], s.x_va, s.y_va)
    for epoch in range(cfg.finetune_epochs):
        for idx in _batches(len(s.y_tr), cfg.batch_size, s.gen):
            book = book_param * nonzero
            idx_now = [torch.from_numpy(i) for i in assignment(book.detach().numpy())]
            params_now = {
                n: book[i] + (s_ - s_.detach()) for n, i, s_ in zip(names, idx_now, shadow)
            }
            opt.zero_grad()
            logits = torch.func.functional_call(model, params_now, (s.x_tr[idx],))
            F.cross_entropy(logits, s.y_tr[idx]).backward()
            opt.step()
        book_now = (book_param * nonzero).detach().numpy()
        idx_epoch = assignment(book_now)
        err = _val_error_with(model, [book_now[i] for i in idx_epoch], s.x_va, s.y_va)
        if err <= best_err:
            best_err, best_book, best_idx = err, book_now.copy(), idx_epoch
        s.bar("quantized fine-tuning", epoch, cfg.finetune_epochs, f"val err {err:.3f}")
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
    written = compress.write_file(path, compress.export_indices(indices, finetuned.codebook))
    return report.with_file(written)
