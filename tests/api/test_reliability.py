"""The NumPy side at the edges users reach: ``out=`` arrays, partial sums, a crafted header's cost.

Each test guards one class of issue 24 and fails on the code before it; runs
under the sanitizers too (``.ci/sanitize``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import softshare
from softshare import _core, _native_recipe, compress
from softshare.compress._format import header
from softshare.compress._format.model import VERSION

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

MIX = softshare.Mixture([0.0, 0.2, -0.3], [-5.0, -4.0, -4.5], [1.0, 0.0, 0.5])
_DECODER = _core.StreamDecoder  # the real one, before a test counts its calls


def test_two_out_arrays_that_overlap_each_other_are_refused() -> None:
    w = [np.linspace(-1, 1, 6).astype(np.float32), np.linspace(-0.5, 0.5, 6).astype(np.float32)]
    shared = np.zeros(10, np.float32)
    for accumulate in (False, True):
        with pytest.raises(
            ValueError, match=r"^out\[1\] overlaps out\[0\]: each gradient needs memory of its own"
        ):
            softshare.penalty(w, MIX, out=[shared[:6], shared[4:]], accumulate=accumulate)
    same = np.zeros(6, np.float32)
    with pytest.raises(ValueError, match=r"overlaps out\[0\]"):
        softshare.penalty(w, MIX, out=[same, same])
    apart = [np.zeros(6, np.float32), np.zeros(6, np.float32)]
    result = softshare.penalty(w, MIX, out=apart)  # apart: each its own gradient
    for got, one in zip(apart, w):
        np.testing.assert_array_equal(got, softshare.penalty(one, MIX).grad_w)
    assert result.grad_w[0] is apart[0]
    # the recipe's passes with outputs: assign (indices) and dequantize (values)
    idx = np.zeros(10, np.uint8)
    with pytest.raises(ValueError, match=r"^out\[1\] overlaps out\[0\]: each output needs memory"):
        _native_recipe.assign_arrays(w, MIX, [idx[:6], idx[4:]])
    values = np.zeros(10)
    with pytest.raises(ValueError, match=r"^out\[1\] overlaps out\[0\]: each output needs memory"):
        _native_recipe.dequantize(
            [np.zeros(6, np.uint8), np.zeros(6, np.uint8)], np.zeros(2), [values[:6], values[4:]]
        )
    # empty arrays hold no bytes: they overlap nothing
    empty = np.zeros(0, np.float32)
    softshare.penalty([empty, empty], MIX, out=[empty, empty])


def test_nan_in_partial_sums_is_reported_as_nan_not_overflow() -> None:
    r = softshare.penalty(np.linspace(-0.5, 0.5, 9), MIX, 0.5)
    vec = r.partial_sums.copy()
    vec[0] = np.nan
    with pytest.raises(ValueError, match=r"^partials\[0\] \(the sum of log-densities\) is NaN"):
        softshare.from_partial_sums(vec, MIX, 0.5)
    vec[0] = -np.inf  # a sum that overflowed: that is an overflow
    with pytest.raises(ValueError, match=r"^the penalty overflowed"):
        softshare.from_partial_sums(vec, MIX, 0.5)
    vec = r.partial_sums.copy()
    vec[3] = np.nan
    with pytest.raises(ValueError, match=r"^partials must be finite"):
        softshare.from_partial_sums(vec, MIX, 0.5)


class _Counting:
    """A header decoder that counts the coder's calls (Python's work is a few per call)."""

    def __init__(self, data: bytes) -> None:
        self.dec = _DECODER(data)
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.dec, name)
        if name in ("bit", "symbol", "uint", "raw"):

            def counted(*args: int) -> int:
                self.calls += 1
                return int(attr(*args))

            return counted
        return attr


def _decode_calls(data: bytes, monkeypatch: pytest.MonkeyPatch) -> int:
    made: list[_Counting] = []

    def factory(raw: bytes) -> _Counting:
        made.append(_Counting(raw))
        return made[-1]

    monkeypatch.setattr(header._core, "StreamDecoder", factory)
    with contextlib.suppress(ValueError):  # refused at its budget: the work until then counts
        header.decode_header(data, VERSION)
    return sum(c.calls for c in made)


def _crafted(n_layers: int) -> bytes:
    """A header whose names cost the decoder most per byte: long runs repeated from the last."""
    names = ["/" * 4000 + str(i) for i in range(n_layers)]
    h = header.Header(np.zeros(1, np.float32), names, [(1,)] * n_layers, [False] * n_layers, None)
    return header.encode_header(h, VERSION)[0]


def test_a_crafted_header_decodes_in_work_linear_in_its_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Coder calls, not seconds: deterministic on a shared machine. Each header
    # byte may make at most a bounded number of calls whatever its size (the
    # reader's budget of name bytes per header byte, plus one name's slack), so
    # a crafted header costs a bounded multiple of a real one's per byte
    # (measured: 128 calls a byte, about 60-130 us in Python; a real header
    # about 10 us). Linear already before issue 24: this guards it.
    per_byte = []
    for n in (8, 32, 128):
        data = _crafted(n)
        calls = _decode_calls(data, monkeypatch) - 2 * header.MAX_NAME_BYTES
        per_byte.append(calls / len(data))
    assert max(per_byte) <= 2 * header.NAME_BYTES_PER_BYTE + 8
    assert per_byte[-1] <= per_byte[0] * 1.5  # does not grow with the size


class _CountedFile:
    """A binary file whose reads add their sizes to ``read``."""

    def __init__(self, f: Any, read: list[int]) -> None:
        self.f, self.read_sizes = f, read

    def __enter__(self) -> _CountedFile:  # noqa: PYI034 (typing.Self is 3.11+)
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.f.read(n)
        self.read_sizes.append(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def test_a_file_that_is_not_a_model_is_refused_after_its_first_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (test_network's 8 GiB sparse file only fails on the old code where the
    # memory runs out; counting the bytes read fails wherever the file is read whole)
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(1 << 20))
    read: list[int] = []
    real_open = Path.open
    monkeypatch.setattr(
        Path, "open", lambda self, *a, **k: _CountedFile(real_open(self, *a, **k), read)
    )
    for call in (compress.read_file, compress.inspect_file):
        with pytest.raises(ValueError, match=r"big\.bin: not a softshare model file"):
            call(path)
    assert 0 < sum(read) <= 64
