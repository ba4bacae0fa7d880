"""The compression recipe built on soft weight-sharing (Ullrich, Meeds & Welling 2017).

Framework-free (NumPy): initialise a mixture over trained weights, hyper-priors
on it, the closed-form EM update, merging of coinciding components and pruning
of dead ones, quantization of every weight to its component's mean, and the
storage cost in the sparse format of Han, Mao & Dally (2016) with real Huffman
code lengths, with an export/load pair that reconstructs the quantized weights
exactly, and the compressed model file that stores them entropy-coded
(:func:`write_file`, :func:`read_file`, :func:`inspect_file`; docs/format.md).
A quantized network is one value, :class:`QuantizedNetwork` (:func:`quantize_network`),
that the report, the file and ``softshare.torch``'s ``QuantizedState`` share.
:mod:`softshare.torch` builds its recipe on this package; this package never imports torch.
"""

from __future__ import annotations

from ..reference import sparse_entries
from ._codes import huffman_code_lengths
from ._em import em_step, log_likelihood
from ._export import export_indices, export_quantized, load_quantized, save_quantized
from ._file import ModelFile, inspect_file, read_file, write_file
from ._format.npz import read_npz
from ._hyperprior import HyperPrior
from ._initmix import init_mixture
from ._merge import MergeReport, merge_components, symmetric_kl
from ._network import QuantizedNetwork, quantize_network
from ._quantize import assign, quantize
from ._storage import CompressionReport, LayerCost, compression_report

__all__ = [
    "CompressionReport",
    "HyperPrior",
    "LayerCost",
    "MergeReport",
    "ModelFile",
    "QuantizedNetwork",
    "assign",
    "compression_report",
    "em_step",
    "export_indices",
    "export_quantized",
    "huffman_code_lengths",
    "init_mixture",
    "inspect_file",
    "load_quantized",
    "log_likelihood",
    "merge_components",
    "quantize",
    "quantize_network",
    "read_file",
    "read_npz",
    "save_quantized",
    "sparse_entries",
    "symmetric_kl",
    "write_file",
]
