"""PyTorch adapter: the soft weight-sharing penalty as a differentiable torch op.

Optional: needs ``torch`` (``pip install softshare[torch]``); ``import softshare``
never imports this package.

>>> import torch, softshare.torch as sst
>>> model = torch.nn.Linear(20, 10)
>>> prior = sst.MixturePrior(mu=[0.0, -0.1, 0.1], log_var=[-8.0, -6.0, -6.0], logit=[2.0, 0.0, 0.0])
>>> loss = prior(model, lam=1e-3)
>>> loss.backward()  # gradients reach model.weight, model.bias and prior.mu/log_var/logit

The op ``torch.ops.softshare.penalty`` computes the value and every gradient in
one pass (the native kernel for CPU float32/float64 tensors, zero-copy; a
chunked pure-torch implementation of the same math on any other device or
dtype) and saves the gradients, so backward only scales them. It has a fake
implementation and an autograd formula registered with ``torch.library``, so
``torch.compile(fullgraph=True)`` traces through it without a graph break.

``MixturePrior.add_grad_`` adds the same gradients straight into ``.grad``
after ``loss.backward()``, without autograd (:mod:`softshare.torch._add_grad`).

Modules: :mod:`softshare.torch._op` (the op and :func:`penalty`),
:mod:`softshare.torch._fallback` (the pure-torch implementation) and
:mod:`softshare.torch.prior` (:class:`MixturePrior`, with the compression
recipe's steps from :mod:`softshare.torch._recipe`: ``merge_``, ``quantize_``,
``requantize_``, ``snapshot``, ``compression_report``, ``from_weights``),
:mod:`softshare.torch._finetune` (:class:`FineTuner`: quantized fine-tuning with
straight-through shadow weights) and :mod:`softshare.torch._choose`
(:class:`Chooser`: checkpoints, merge settings and the assignment rule chosen
with the user's validation function) and :mod:`softshare.torch._budget`
(:class:`ErrorBudget`: the prior's strength raised during retraining while the
quantized network stays within a validation error budget).
"""

from __future__ import annotations

from ._budget import BudgetCheck, ErrorBudget
from ._choose import Chooser, QuantizationChoice
from ._file import load_compressed, save_compressed
from ._finetune import FineTuner
from ._op import BACKENDS, TensorOrTensors, penalty
from ._overlap import PendingPenalty, start_penalty
from ._quantized import QuantizedState
from .prior import MixturePrior

__all__ = [
    "BACKENDS",
    "BudgetCheck",
    "Chooser",
    "ErrorBudget",
    "FineTuner",
    "MixturePrior",
    "PendingPenalty",
    "QuantizationChoice",
    "QuantizedState",
    "TensorOrTensors",
    "load_compressed",
    "penalty",
    "save_compressed",
    "start_penalty",
]
