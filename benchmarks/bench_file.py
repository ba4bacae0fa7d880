"""Bytes on disk of the demo's networks, stored every way, and the compressed file's speed at 1e7.

Usage::

    python benchmarks/bench_file.py [--from DIR] [--repeat 5]

``--from DIR`` reads the networks from a ``softshare demo`` output folder
(``mlp_seed0.sws``, ``cnn_seed0.sws``); without it the default demo recipe
runs first (about 90 s). For each network, the bytes of:

- ``torch.save``: the float32 ``state_dict`` of the quantized model;
- ``xz`` / ``zstd``: the float32 weights (raw bytes, all layers) through
  ``lzma`` (preset 9 extreme) and ``zstandard`` (level 22; skipped when not
  installed);
- ``npz``: the quantized indices (uint8) and codebook through
  ``save_quantized`` (``np.savez_compressed``, the demo's old file);
- ``zstd idx``: the uint8 indices and the float32 codebook through zstandard;
- ``.sws``: the compressed model file (``softshare.compress.write_file``);

beside Han et al.'s Huffman-coded size and the entropy bound of the report.
Then the time to write (encode) and read (decode, to float32 layers) a file
of 1e7 weights, three ways: the demo MLP's first layer tiled to 1e7 weights
(its dead rows and columns repeat), 1e7 weights drawn independently with the
demo MLP's index frequencies, and 1e7 weights every one of which is non-zero
(17 values).
"""

from __future__ import annotations

import argparse
import io
import lzma
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from softshare import compress, demo
from softshare import torch as sst

from _timing import machine_line

try:
    import zstandard
except ImportError:  # pragma: no cover - optional
    zstandard = None


def _zstd(data: bytes) -> int | None:
    if zstandard is None:
        return None
    return len(zstandard.ZstdCompressor(level=22).compress(data))


def _xz(data: bytes) -> int:
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def _networks(folder: Path | None) -> tuple[Path, dict[str, Path]]:
    if folder is None:
        folder = Path(tempfile.mkdtemp(prefix="bench-file-"))
        data = demo.load_data(None, seed=0)
        for kind in ("mlp", "cnn"):
            demo.run_network(kind, data, demo.Config(), 0, folder, progress=False, plots=False)
    return folder, {kind: folder / f"{kind}_seed0.sws" for kind in ("mlp", "cnn")}


def _sizes(kind: str, path: Path) -> dict[str, Any]:
    contents = compress.inspect_file(path)
    side = 8  # the demo's digits
    model = demo.make_model(kind, side)
    sst.load_compressed(path, model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    export = {"codebook": contents.codebook.astype(np.float32), **contents.indices}
    with tempfile.TemporaryDirectory() as tmp:
        compress.save_quantized(Path(tmp) / "q.npz", export)
        npz = (Path(tmp) / "q.npz").stat().st_size
    indices = b"".join(i.astype(np.uint8).tobytes() for i in contents.indices.values())
    zstd_idx = _zstd(indices + export["codebook"].tobytes())
    kinds = {n: ("conv" if i.ndim == 4 else "dense") for n, i in contents.indices.items()}
    report = compress.compression_report(contents.indices, contents.codebook, kinds=kinds)
    return {
        "network": kind,
        "weights": contents.n_weights,
        "float32": len(weights),
        "torch.save": len(buffer.getvalue()),
        "xz": _xz(weights),
        "zstd": _zstd(weights),
        "npz": npz,
        "zstd idx": zstd_idx,
        "Huffman": report.bits_huffman / 8,
        "entropy bound": report.bits_entropy / 8,
        ".sws": contents.file_bytes,
    }


def _size_table(rows: list[dict[str, Any]]) -> str:
    cols = ["torch.save", "xz", "zstd", "npz", "zstd idx", "Huffman", "entropy bound", ".sws"]
    lines = [
        "| network | weights | float32 bytes | " + " | ".join(cols) + " |",
        "|---|---:|---:|" + "---:|" * len(cols),
    ]
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            cells.append("-" if v is None else f"{v:,.0f} ({r['float32'] / v:.1f}x)")
        lines.append(
            f"| {r['network']} | {r['weights']:,} | {r['float32']:,} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def _big_exports(mlp: Path) -> dict[str, dict[str, np.ndarray]]:
    contents = compress.inspect_file(mlp)
    book = contents.codebook.astype(np.float32)
    first = next(iter(contents.indices.values()))  # (300, 64)
    rows, cols = 3125, 3200  # 1e7
    reps = (-(-rows // first.shape[0]), -(-cols // first.shape[1]))
    tiled = np.tile(first, reps)[:rows, :cols]
    all_idx = np.concatenate([i.reshape(-1) for i in contents.indices.values()])
    freq = np.bincount(all_idx, minlength=book.size) / all_idx.size
    rng = np.random.default_rng(0)
    shape = (2500, 4000)
    iid = rng.choice(book.size, size=shape, p=freq).astype(np.uint8)
    dense = rng.integers(1, 17, size=shape).astype(np.uint8)
    dense_book = np.concatenate([[0.0], np.linspace(-1, 1, 16)]).astype(np.float32)
    return {
        "demo MLP's first layer, tiled": {"codebook": book, "w": tiled},
        "independent, demo MLP's frequencies": {"codebook": book, "w": iid},
        "every weight non-zero, 16 values": {"codebook": dense_book, "w": dense},
    }


def _speed_table(exports: dict[str, dict[str, np.ndarray]], repeat: int) -> str:
    lines = [
        "| 10^7 weights | non-zero % | file bytes | bits / weight | write (encode) s | read (decode) s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.sws"
        for label, export in exports.items():
            w = export["w"]
            write, read = [], []
            for _ in range(repeat):
                t0 = time.perf_counter()
                written = compress.write_file(path, export)
                t1 = time.perf_counter()
                layers = compress.read_file(path)
                t2 = time.perf_counter()
                write.append(t1 - t0)
                read.append(t2 - t1)
            assert np.array_equal(layers["w"], export["codebook"][w])
            nz = 100 * np.count_nonzero(export["codebook"][w]) / w.size
            lines.append(
                f"| {label} {w.shape} | {nz:.2f} | {written.file_bytes:,} | "
                f"{8 * written.file_bytes / w.size:.3f} | {min(write):.3f} | {min(read):.3f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="folder", type=Path, default=None, metavar="DIR")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (the best is shown)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    folder, files = _networks(args.folder)
    print(machine_line())
    print(
        f"torch {torch.__version__}; zstandard {getattr(zstandard, '__version__', 'not installed')}"
    )
    print(f"networks from {folder}\n")
    print(_size_table([_sizes(kind, path) for kind, path in files.items()]))
    print()
    print(_speed_table(_big_exports(files["mlp"]), args.repeat))


if __name__ == "__main__":
    main()
