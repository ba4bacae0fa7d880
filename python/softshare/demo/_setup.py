"""What every stage of the recipe works on (``Setup``), and what passes between the stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ._loop import Progress
from .models import make_model
from .schedule import Schedule, schedule_for

if TYPE_CHECKING:
    from .. import compress
    from .._mixture import Mixture
    from ..torch import ErrorBudget, MixturePrior, QuantizationChoice, QuantizedState
    from .config import Config
    from .data import Data


@dataclass
class Setup:
    """The model, the data as tensors on the device, the settings and schedule, the RNG."""

    model: Any
    x_tr: Any
    y_tr: Any
    x_va: Any
    y_va: Any
    x_te: Any
    y_te: Any
    cfg: Config
    gen: Any  # torch.Generator (on the CPU) drawing the batches
    label: str
    progress: bool
    sched: Schedule
    device: Any = "cpu"

    @classmethod
    def build(
        cls, kind: str, data: Data, cfg: Config, seed: int, *, progress: bool, device: str = "cpu"
    ) -> Setup:
        """Seed torch, then make the data's tensors and a fresh model of ``kind`` on ``device``."""
        import torch

        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)

        def tensor(a: np.ndarray) -> Any:
            return torch.from_numpy(a).to(device)

        x_tr, y_tr = tensor(data.x_train), tensor(data.y_train)
        x_va, y_va = tensor(data.x_val), tensor(data.y_val)
        x_te, y_te = tensor(data.x_test), tensor(data.y_test)
        model = make_model(kind, data.side).to(device)
        sched = schedule_for(cfg, len(data.y_train))
        label = f"{kind} seed {seed}"
        return cls(
            model, x_tr, y_tr, x_va, y_va, x_te, y_te, cfg, gen, label, progress, sched, device
        )

    def bar(self, stage: str, total: int) -> Progress:
        """A progress display of ``stage`` (``total`` steps), drawn when asked to."""
        return Progress(f"{self.label}: {stage}", total, enabled=self.progress)

    @property
    def adam(self) -> dict[str, Any]:
        """Adam's options here: its fused kernel on the CPU and CUDA (a quarter faster a step)."""
        import torch

        return {"fused": True} if torch.device(self.device).type in ("cpu", "cuda") else {}

    def params(self) -> list[Any]:
        """Detached CPU copies of the model's parameters."""
        return [p.detach().cpu().clone() for p in self.model.parameters()]


@dataclass
class Trained:
    """Weights after a stage of training (detached CPU copies) and the test error then."""

    weights: list[Any]
    error: float


@dataclass
class Retrained(Trained):
    """After retraining with the prior: also the prior, its (step, mu, sigma) at each check, the budget."""

    prior: Any = None
    history: list[tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)
    budget: ErrorBudget | None = None  # the search for the strength, where the recipe ran one


@dataclass
class Quantized:
    """The merged mixture, what merging did, the assignment rule, the choice and the merged prior."""

    mixture: Mixture
    merge: compress.MergeReport
    use_pi: bool
    choice: QuantizationChoice
    prior: MixturePrior


@dataclass
class Finetuned:
    """The fine-tuned quantization (what the model and its file hold) and the test error."""

    state: QuantizedState
    error: float
