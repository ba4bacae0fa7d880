"""``softshare demo``: the compression recipe end to end on data that ships with a package.

Pretrain a network, retrain it with a learnt Gaussian-mixture prior (the
softshare torch op, a zero component and Gamma hyper-priors), merge and prune
components, quantize every weight to its component's mean, fine-tune the
codebook values (Han et al.), write the compressed model file
(``<model>_seed<k>.sws``, :func:`softshare.compress.write_file`), and report
test error before and after with the file's size beside the storage cost in
the paper's form. Two networks: a LeNet-300-100-style MLP and
a small LeNet-5-style CNN. Data: scikit-learn's bundled 8x8 digits, or MNIST
(``--data``, ``mnist.npz`` or a folder of IDX files). Every choice the recipe
makes (best epoch, merge threshold) is taken on a validation split of the
training data, never on the test set.

Needs ``pip install "softshare[demo]"`` (torch, scikit-learn, matplotlib).
"""

from __future__ import annotations

from .cli import main
from .data import Data, load_data, load_mnist
from .models import make_model
from .recipe import Config, RunResult, run_network

__all__ = [
    "Config",
    "Data",
    "RunResult",
    "load_data",
    "load_mnist",
    "main",
    "make_model",
    "run_network",
]
