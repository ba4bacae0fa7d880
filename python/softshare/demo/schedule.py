"""The recipe's schedule: how many optimizer steps each stage takes on a training set of a given size.

Each stage runs ``max(<stage>_steps, <stage>_epochs * batches per epoch)``
steps (:class:`~softshare.demo.Config`): a fixed budget of steps where the
data are small (on the bundled digits, 1,150 training images, the budget
rules: 60, 400 and 60 epochs), whole passes over the data where they are
large (on MNIST's 55,000 training images, the epochs rule: 20, 100 and 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config

MNIST_TRAIN = 55_000  # MNIST's 60,000 training images less the demo's 5,000 for validation
STAGES = ("pretrain", "retrain", "finetune")


@dataclass(frozen=True)
class Schedule:
    """Optimizer steps per stage on ``n_train`` images in batches of ``batch_size``.

    Attributes
    ----------
    n_train, batch_size, steps_per_epoch : int
        The training set, the batch, and the batches in one pass over the set.
    pretrain, retrain, finetune : int
        Steps of each stage.
    max_evals : int
        At most this many validation checks per stage (one per epoch, or fewer).
    """

    n_train: int
    batch_size: int
    steps_per_epoch: int
    pretrain: int
    retrain: int
    finetune: int
    max_evals: int

    @property
    def total(self) -> int:
        """Steps of the three stages together."""
        return self.pretrain + self.retrain + self.finetune

    def every(self, steps: int) -> int:
        """Steps between validation checks in a stage of ``steps`` (a check also ends it)."""
        return max(self.steps_per_epoch, math.ceil(steps / self.max_evals))

    def describe(self) -> str:
        """One line: the steps of each stage and the training set they are counted on."""
        epochs = self.total / self.steps_per_epoch
        return (
            f"pretrain {self.pretrain:,} + retrain {self.retrain:,} + fine-tune "
            f"{self.finetune:,} = {self.total:,} steps of {self.batch_size} images "
            f"({epochs:,.1f} epochs of {self.n_train:,} training images)"
        )


def schedule_for(cfg: Config, n_train: int) -> Schedule:
    """The steps of each stage of the recipe ``cfg`` on ``n_train`` training images.

    Parameters
    ----------
    cfg : Config
        Its ``*_steps`` and ``*_epochs``, ``batch_size`` and ``max_evals``.
    n_train : int
        Training images (at least 1).

    Returns
    -------
    Schedule
        Each stage ``max(steps, epochs * ceil(n_train / batch_size))`` steps.
    """
    per_epoch = math.ceil(max(1, n_train) / cfg.batch_size)
    steps = {
        stage: max(getattr(cfg, f"{stage}_steps"), getattr(cfg, f"{stage}_epochs") * per_epoch)
        for stage in STAGES
    }
    return Schedule(
        n_train,
        cfg.batch_size,
        per_epoch,
        steps["pretrain"],
        steps["retrain"],
        steps["finetune"],
        cfg.max_evals,
    )
