"""The compressed model file against crafted headers: what a hostile file must not make the reader do.

Each file here has valid checksums (built with the header coder itself), so
only the reader's limits stand between it and a long decode or a large
allocation; found by an adversarial review of the format.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import softshare
from softshare import _core, compress
from softshare.compress._format.header import (
    C_COUNT,
    C_FLAG,
    C_KIND,
    C_LEN,
    C_LETTER,
    C_WORD,
    WORD,
    Header,
    _Coder,
    encode_header,
)
from softshare.compress._format.model import MAGIC, VERSION, _varint


def _file(head: bytes, data: bytes = b"") -> bytes:
    prefix = MAGIC + bytes([VERSION]) + _varint(len(head)) + head
    crc = zlib.crc32(prefix).to_bytes(4, "little")
    return prefix + crc + data + zlib.crc32(data).to_bytes(4, "little")


def _header(names: list[str], shapes: list[tuple[int, ...]]) -> bytes:
    head, _ = encode_header(
        Header(np.zeros(1, np.float32), names, shapes, [False] * len(names), None), VERSION
    )
    return head


def test_a_word_spelled_out_again_is_refused(tmp_path: Path) -> None:
    # "a" spelled out as a new word over and over: the word list would grow by
    # one per token and every look-up scan it (a 1.2 KB file read for a minute)
    enc = _core.StreamEncoder()
    c = _Coder(enc, None)
    c.uint(C_COUNT, 1), c.bit(C_FLAG, 0), c.bit(C_FLAG + 1, 0), c.uint(C_COUNT + 1, 1)
    c.floats(0, np.zeros(1, np.float32), False, "codebook")
    for _ in range(2):
        c.symbol(C_KIND + 4, 4, WORD)
        c.uint(C_WORD, 0), c.uint(C_LEN, 0), c.symbol(C_LETTER, 52, 26)
    path = tmp_path / "words.sws"
    path.write_bytes(_file(enc.finish()))
    with pytest.raises(ValueError, match="spells out the known word"):
        compress.read_file(path)


def test_many_layers_in_a_small_header_are_refused_at_once(tmp_path: Path) -> None:
    names = [str(i) for i in range(20_000)]
    # the writer refuses to make what a reader would refuse
    with pytest.raises(ValueError, match="more than a reader accepts"):
        compress.write_file(
            tmp_path / "many.sws",
            {n: np.zeros(1, np.float32) for n in names},
            softshare.Mixture([0.0, 0.5], [-4.0, -4.0], [0.0, 0.0]),
        )
    # a crafted one: the count alone, far over 4 layers per header byte
    enc = _core.StreamEncoder()
    c = _Coder(enc, None)
    c.uint(C_COUNT, 1), c.bit(C_FLAG, 0), c.bit(C_FLAG + 1, 0), c.uint(C_COUNT + 1, 1 << 20)
    path = tmp_path / "count.sws"
    path.write_bytes(_file(enc.finish()))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="layers: over the limit"):
        compress.inspect_file(path)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("shape", [(0, 2**48, 2**48), (2**48, 2**48, 0)])
def test_empty_layers_with_huge_dimensions_are_refused(
    tmp_path: Path, shape: tuple[int, ...]
) -> None:
    path = tmp_path / "huge.sws"
    path.write_bytes(_file(_header(["a"], [shape])))
    with pytest.raises(ValueError, match=r"^.*huge\.sws: layer 'a' has shape"):
        compress.read_file(path)
    with pytest.raises(ValueError, match="values"):
        compress.write_file(
            path,
            {"a": np.zeros((0, 2**25, 2**25), np.float32)},
            softshare.Mixture([0.0, 0.5], [-4.0, -4.0], [0.0, 0.0]),
        )


def test_only_regular_files_are_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a regular file"):
        compress.read_file("/dev/zero")
    with pytest.raises(FileNotFoundError):
        compress.read_file(tmp_path / "missing.sws")


def test_writers_take_long_names_and_concurrent_writes(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    mix = softshare.Mixture([0.0, -0.5, 0.5], [-4.0, -4.0, -4.0], [0.0, 0.0, 0.0])
    layers = {"w": np.linspace(-1, 1, 50).astype(np.float32)}
    long_name = tmp_path / ("n" * 250)  # legal; a temporary name built from it was not
    compress.write_file(long_name, layers, mix)
    compress.save_quantized(tmp_path / ("m" * 250), compress.export_quantized(layers, mix))
    target = tmp_path / "shared.sws"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: compress.write_file(target, layers, mix), range(40)))
    np.testing.assert_array_equal(
        compress.read_file(target)["w"], compress.read_file(long_name)["w"]
    )
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_file_says_what_it_was_given(tmp_path: Path) -> None:
    mix = softshare.Mixture([0.0, -0.5, 0.5], [-4.0, -4.0, -4.0], [0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="mapping"):
        compress.write_file(tmp_path / "x.sws", [np.zeros(3)], mix)  # type: ignore[arg-type]
    exported = compress.export_quantized({"w": np.linspace(-1, 1, 50)}, mix)
    with pytest.raises(ValueError, match="without a mixture"):
        compress.write_file(tmp_path / "x.sws", exported, mix)
