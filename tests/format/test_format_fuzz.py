"""Corrupt compressed model files: a clear ValueError or the identical result, never a crash.

Random bytes of valid files are flipped, overwritten, cut off or added (at
least 2,000 cases; ``SOFTSHARE_FUZZ_EXAMPLES`` sets how many): every case is
refused with a message that names the file and what is wrong, or gives
exactly the original's layers. Behind checksums made good again, the same
corruption reaches the decoders themselves: they must refuse it or decode
something of the declared shapes, never crash, hang or allocate beyond what
the file declares.
"""

from __future__ import annotations

import os
import time
import tracemalloc
import zlib
from collections import Counter

import numpy as np
import pytest

import softshare
from softshare import compress
from softshare.compress._format import model as _modelfile

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

EXAMPLES = max(2000, int(os.environ.get("SOFTSHARE_FUZZ_EXAMPLES", "4000")))


def _segmented(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Layers a version-3 file codes in 3 segments (bands of 2 and 1 rows, a small layer, one more)."""
    shapes = {"big": (3, 360_000), "small": (10, 10), "last": (700, 1000)}
    return {
        n: (rng.normal(0, 0.5, s) * (rng.random(s) < 0.01)).astype(np.float32)
        for n, s in shapes.items()
    }


def _originals() -> list[tuple[bytes, dict[str, np.ndarray]]]:
    """Valid files of every kind: sparse float32, float64 with a mixture, empty, one value, segmented."""
    rng = np.random.default_rng(0)
    mix = softshare.Mixture([0.0, -0.4, 0.3, 0.7], [-9.0, -7.0, -7.0, -7.0], [2.0, 0.0, 0.0, 0.0])
    sparse = rng.normal(0, 0.5, (40, 30)) * (rng.random((40, 30)) < 0.1)
    cases = [
        ({"fc.weight": sparse.astype(np.float32), "fc.bias": np.zeros(40, np.float32)}, mix, False),
        ({"a.weight": rng.normal(0, 0.5, (3, 4, 3, 3)), "b": np.float64(0.3)}, mix, True),
        ({"empty": np.zeros((0, 7)), "über": np.full((2, 1), 0.7, np.float32)}, mix, False),
        ({"only": np.ones((5, 5), np.float32)}, softshare.Mixture([1.0], [-3.0], [0.0]), True),
        (_segmented(rng), mix, False),
    ]
    out = []
    for i, (layers, mixture, keep) in enumerate(cases):
        path = f"/tmp/softshare-fuzz-{os.getpid()}-{i}.sws"
        try:
            written = compress.write_file(path, layers, mixture, keep_mixture=keep)
            with open(path, "rb") as f:
                out.append((f.read(), written.layers()))
        finally:
            os.unlink(path)
    return out


ORIGINALS = _originals()


def _mutate(rng: np.random.Generator, raw: bytes) -> bytes:
    data = bytearray(raw)
    how = int(rng.integers(4))
    if how == 0:  # flip 1 to 4 bytes
        for at in rng.integers(0, len(data), int(rng.integers(1, 5))):
            data[at] ^= int(rng.integers(1, 256))
    elif how == 1:  # cut off
        del data[int(rng.integers(0, len(data))) :]
    elif how == 2:  # add
        data += rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    else:  # overwrite a run
        at = int(rng.integers(0, len(data)))
        run = rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
        data[at : at + len(run)] = run
    return bytes(data)


def _declared_bytes(layers: dict[str, np.ndarray]) -> int:
    return sum(a.nbytes for a in layers.values())


def _identical(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    return list(got) == list(expected) and all(
        got[n].dtype == expected[n].dtype
        and got[n].shape == expected[n].shape
        and np.array_equal(
            got[n].reshape(-1).view(np.uint8), expected[n].reshape(-1).view(np.uint8)
        )
        for n in got
    )


def test_corrupt_files_are_refused_or_read_identically() -> None:
    rng = np.random.default_rng(1)
    messages: Counter[str] = Counter()
    t0 = time.perf_counter()
    for case in range(EXAMPLES):
        raw, expected = ORIGINALS[case % len(ORIGINALS)]
        bad = _mutate(rng, raw)
        watch = case % 25 == 0
        if watch:
            tracemalloc.start()
        try:
            got = _modelfile.parse_model(bad, "fuzzed.sws").layers()
        except ValueError as e:
            text = str(e)
            assert text.startswith("fuzzed.sws: "), text
            messages[text.split(": ")[1].split(" (", maxsplit=1)[0][:40]] += 1
        else:
            assert _identical(got, expected), f"case {case}: a different result, not an error"
            messages["identical"] += 1
        finally:
            if watch:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                assert peak <= 4 * (len(bad) + _declared_bytes(expected)) + (64 << 10), case
    assert time.perf_counter() - t0 < 60
    assert sum(messages.values()) == EXAMPLES
    assert len(messages) >= 4, messages  # magic, lengths, both checksums at least


def _with_checksums(data: bytearray) -> bytes | None:
    """``data`` with its checksums made good again, or None where its header length is broken."""
    try:
        _, start = _modelfile._header_section(bytes(data), "x")
    except ValueError as e:
        if "checksum" not in str(e):
            return None
        length, at, _ = _modelfile._read_varint(data, 4)
        start = at + length + 4
        data[start - 4 : start] = zlib.crc32(data[: start - 4]).to_bytes(4, "little")
    data[-4:] = zlib.crc32(data[start:-4]).to_bytes(4, "little")
    return bytes(data)


def test_decoders_refuse_or_decode_any_stream_behind_good_checksums() -> None:
    rng = np.random.default_rng(2)
    decoded = refused = 0
    t0 = time.perf_counter()
    for case in range(EXAMPLES // 2):
        raw, _ = ORIGINALS[case % len(ORIGINALS)]
        data = bytearray(raw)
        for at in rng.integers(8, len(data) - 4, int(rng.integers(1, 4))):
            data[at] = int(rng.integers(0, 256))
        fixed = _with_checksums(data)
        if fixed is None:
            continue
        start = time.perf_counter()
        try:
            contents = _modelfile.parse_model(fixed, "f")
        except ValueError as e:
            message = str(e)
            refused += 1
            assert message.startswith("f: ")
        else:
            decoded += 1
            k = contents.codebook.size
            for name, idx in contents.indices.items():
                assert idx.size == 0 or int(idx.max()) < k, name
            assert np.all(np.isfinite(contents.codebook))
        assert time.perf_counter() - start < 2.0, case
    assert decoded + refused > EXAMPLES // 4
    assert refused > 0
    assert time.perf_counter() - t0 < 60


@pytest.mark.parametrize("index", range(len(ORIGINALS)))
def test_originals_read_back(index: int) -> None:
    raw, expected = ORIGINALS[index]
    assert _identical(_modelfile.parse_model(raw, "f").layers(), expected)
