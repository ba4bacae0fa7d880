"""What ``softshare demo`` prints and writes once the networks are trained: tables, means, results.json."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from .paper import reference_row, references, references_json

if TYPE_CHECKING:
    from pathlib import Path

    from .recipe import RunResult

_MEANS = (
    "error_before",
    "error_after",
    "nonzero_fraction",
    "n_components",
    "compression_ratio",
    "compression_ratio_entropy",
)


def table(rows: list[RunResult], data_name: str) -> str:
    """The summary table: one row per network and seed, each network's published rows after its own.

    Parameters
    ----------
    rows : list of RunResult
        The runs, in any order (grouped by network in the table, in order of first appearance).
    data_name : str
        "digits" or "mnist" (only MNIST runs of the paper's networks get published rows).

    Returns
    -------
    str
        A Markdown table.
    """
    lines = [
        (
            "| network | seed | error before % | error after % | Δ pp | non-zero % | components "
            "| file bytes | ratio (file) | entropy bound |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in dict.fromkeys(r.name for r in rows):
        for r in (r for r in rows if r.name == kind):
            lines.append(
                f"| {r.name} | {r.seed} | {100 * r.error_before:.2f} | {100 * r.error_after:.2f} | "
                f"{100 * (r.error_after - r.error_before):+.2f} | {100 * r.nonzero_fraction:.2f} | "
                f"{r.n_components} | {r.file_bytes} | {r.compression_ratio:.1f}x | "
                f"{r.compression_ratio_entropy:.1f}x |"
            )
        lines.extend(reference_row(ref, kind) for ref in references(kind, data_name))
    return "\n".join(lines)


def sources(rows: list[RunResult], data_name: str) -> str:
    """The citations of the published rows in :func:`table` (empty when there are none)."""
    cited = {ref.source for r in rows for ref in references(r.name, data_name)}
    if not cited:
        return ""
    notes = "\n".join(f"- {c}" for c in sorted(cited, reverse=True))
    return (
        "Published rows (MNIST, 10,000 test images): their ratio counts Han et al.'s storage "
        "format (CSR and codebook indices, Huffman coded), the demo's its .sws file.\n" + notes
    )


def means(rows: list[RunResult], models: list[str], data_name: str) -> list[dict[str, Any]]:
    """Per network, the mean over seeds of the summary's figures (and its published rows)."""
    summary = []
    for kind in models:
        mine = [r for r in rows if r.name == kind]
        mean = {k: float(np.mean([getattr(r, k) for r in mine])) for k in _MEANS}
        summary.append({"name": kind, **mean, "paper": references_json(kind, data_name)})
    return summary


def mean_lines(rows: list[RunResult], summary: list[dict[str, Any]]) -> str:
    """One line per network run with more than one seed: its mean errors and ratio."""
    lines = []
    for m in summary:
        if sum(r.name == m["name"] for r in rows) > 1:
            lines.append(
                f"mean {m['name']}: error {100 * m['error_before']:.2f}% -> "
                f"{100 * m['error_after']:.2f}% "
                f"({100 * (m['error_after'] - m['error_before']):+.2f} pp), "
                f"{m['compression_ratio']:.1f}x"
            )
    return "\n".join(lines)


def write_results(out: Path, results: dict[str, Any], rows: list[RunResult]) -> None:
    """Write results.json to ``out`` whole or not at all (through a partial file and a rename).

    Each run's record is its :class:`RunResult` (less the storage table) with
    the published rows of its network under ``"paper"``.
    """
    data_name = results["data"]
    results["models"] = [
        {
            **{k: v for k, v in asdict(r).items() if k != "table"},
            "paper": references_json(r.name, data_name),
        }
        for r in rows
    ]
    partial = out / "results.json.partial"
    partial.write_text(json.dumps(results, indent=2))
    os.replace(partial, out / "results.json")  # complete or absent, never half-written
