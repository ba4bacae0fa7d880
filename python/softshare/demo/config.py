"""The recipe's settings (:class:`Config`): a dataclass that imports nothing else of the demo."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    """Settings of the recipe; the defaults are the demo's.

    The schedule (:func:`~softshare.demo.schedule.schedule_for`): each stage
    runs ``max(<stage>_steps, <stage>_epochs * batches per epoch)`` optimizer
    steps, so the steps rule on small data (the bundled digits: 60, 400 and 60
    epochs of 18 batches) and the epochs on large data (MNIST: 20, 100 and 10
    passes over 55,000 images). ``max_evals`` bounds the validation checks
    per stage (one per epoch, or fewer).
    """

    pretrain_steps: int = 1080
    retrain_steps: int = 7200
    finetune_steps: int = 1080
    pretrain_epochs: int = 20
    retrain_epochs: int = 100
    finetune_epochs: int = 10
    max_evals: int = 400
    batch_size: int = 64
    n_components: int = 17
    tau: float = (
        2e-3  # lam = tau / n_train: the prior per training example (where the search starts)
    )
    error_budget: float | None = (
        1e-3  # validation error allowed above pretraining's; None: tau fixed
    )
    budget_grow: float = 1.25  # factor tau changes by at each validation check of the search
    budget_quantized: bool = (
        False  # the budget bounds the quantized network's error, not the float's
    )
    budget_warmup: float = 0.1  # share of retraining before tau first changes
    budget_settle: float = 0.5  # share of retraining before checkpoints compete (the widths settle)
    lr: float = 2e-3
    lr_mu: float = 5e-4
    lr_log_var: float = 1e-2
    lr_logit: float = 3e-3
    max_sigma_fraction: float = 0.05
    pi_zero: float | None = 0.999  # None: the zero component's proportion is learnt
    init_sigma: float = 2.0  # initial sigma of every component, in units of the weights' std
    finetune_lr: float = 5e-4
    finetune_lr_weights: float = 3e-4
    reassign_every: int = 32  # fine-tuning steps between assignments of the shadow weights
    spread: str = "range"
    merge_tolerance: float = 0.0  # validation error given up for a smaller file when merging
    prune_below: tuple[float, ...] = (0.5,)  # pruning bounds tried (weights per component)

    @classmethod
    def quick(cls) -> Config:
        """A tiny schedule for smoke tests: 20, 40 and 10 steps, whatever the data."""
        return cls(
            pretrain_steps=20,
            retrain_steps=40,
            finetune_steps=10,
            pretrain_epochs=0,
            retrain_epochs=0,
            finetune_epochs=0,
            max_evals=4,
        )
