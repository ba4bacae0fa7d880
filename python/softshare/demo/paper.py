"""The published figures the demo's MNIST runs are printed beside, with their sources.

Ullrich, Meeds & Welling (2017), Table 1, and the Deep Compression rows it
compares against (Han, Mao & Dally 2016, Table 1). Their ratios count the
storage of Han et al.'s format (CSR indices and codebook indices, Huffman
coded), not the bytes of a file; the demo's ratio is its ``.sws`` file's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ULLRICH = (
    "Ullrich, Meeds & Welling (2017), Soft weight-sharing for neural network compression, "
    "ICLR 2017, Table 1"
)
HAN = (
    "Han, Mao & Dally (2016), Deep compression: compressing deep neural networks with pruning, "
    "trained quantization and Huffman coding, ICLR 2016, Table 1"
)


@dataclass(frozen=True)
class Reference:
    """One published result: test errors before and after, non-zero share, ratio."""

    method: str  # a short label for the table
    source: str  # the citation
    error_before: float
    error_after: float
    nonzero_fraction: float
    compression_ratio: float


PAPER_ROWS: dict[str, tuple[Reference, ...]] = {
    "lenet-300-100": (
        Reference("Ullrich et al. 2017", ULLRICH, 0.0189, 0.0194, 0.043, 64.2),
        Reference("Han et al. 2016", HAN, 0.0164, 0.0158, 0.080, 40.0),
    ),
    "lenet-5-caffe": (
        Reference("Ullrich et al. 2017", ULLRICH, 0.0088, 0.0097, 0.005, 162.0),
        Reference("Han et al. 2016", HAN, 0.0080, 0.0074, 0.080, 39.0),
    ),
}


def references(kind: str, data_name: str) -> tuple[Reference, ...]:
    """The published rows for network ``kind`` on data ``data_name`` (none but on MNIST)."""
    return PAPER_ROWS.get(kind, ()) if data_name == "mnist" else ()


def reference_row(ref: Reference, kind: str) -> str:
    """A row of the demo's summary table for a published result."""
    return (
        f"| {kind}: *{ref.method}* | paper | {100 * ref.error_before:.2f} | "
        f"{100 * ref.error_after:.2f} | {100 * (ref.error_after - ref.error_before):+.2f} | "
        f"{100 * ref.nonzero_fraction:.2f} | | | {ref.compression_ratio:.1f}x (storage) | |"
    )


def references_json(kind: str, data_name: str) -> list[dict[str, Any]]:
    """The published rows of :func:`references` as results.json records them."""
    return [asdict(r) for r in references(kind, data_name)]
