"""``softshare demo``: the compression recipe end to end on data that ships with a package.

Pretrain a network, retrain it with a learnt Gaussian-mixture prior (the
softshare torch op, a zero component and Gamma hyper-priors), merge and prune
components, quantize every weight to its component's mean, fine-tune the
codebook values (Han et al.), write the compressed model file
(``<model>_seed<k>.sws``, :func:`softshare.compress.write_file`), and report
test error before and after with the file's size beside the storage cost in
the paper's form. Networks: on scikit-learn's bundled 8x8 digits (the
default data) a 300-100 MLP and a small CNN; on MNIST-form 28x28 data
(``--data``: ``mnist.npz`` or a folder of IDX files, gzipped or not) the
paper's LeNet-300-100 and LeNet-5-Caffe, printed beside the published rows
of Ullrich, Meeds & Welling (2017) and Han et al. (2016). The schedule is in
optimizer steps, scaled to the training set (:mod:`.schedule`). Every choice
the recipe makes (best check, merge threshold) is taken on a validation
split of the training data, never on the test set.

Needs ``pip install "softshare[demo]"`` (torch, scikit-learn, matplotlib).
"""

from __future__ import annotations

from .cli import main
from .config import Config
from .data import Data, load_data, load_mnist
from .models import make_model
from .recipe import RunResult, run_network
from .schedule import Schedule, schedule_for

__all__ = [
    "Config",
    "Data",
    "RunResult",
    "Schedule",
    "load_data",
    "load_mnist",
    "main",
    "make_model",
    "run_network",
    "schedule_for",
]
