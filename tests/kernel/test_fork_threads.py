"""Threads, fork and memory of the native pass: never hung, never aborted, never oversubscribed.

GNU libgomp is not fork-safe: a child forked after a parallel region of the
parent hangs in its first parallel region. softshare marks forked children
(``pthread_atfork``) and runs the pass there on the calling thread, with the
same bits. Every scenario that could hang runs in a subprocess with a timeout,
so a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import softshare
from softshare import _core, reference
from softshare._inputs import as_n_threads, cpu_count

#: .ci/sanitize runs this file's tests under ASan and UBSan (pytest -m sanitize).
pytestmark = pytest.mark.sanitize

LINUX = sys.platform.startswith("linux")
#: Under AddressSanitizer (.ci/sanitize) memory is not what the kernel allocates.
ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")
#: Several blocks: the parent's pass runs an OpenMP parallel region.
N = 5 * _core.block_size + 17

_COMMON = f"""
import os, sys
import numpy as np
import softshare
from softshare import _core

N = {N}
MIX = softshare.Mixture([0.0, 0.1, -0.2], [-4.0, -3.0, -5.0], [0.0, 0.5, -0.5])

def weights(k):
    return np.random.default_rng(k).normal(0.0, 0.3, N).astype(np.float32)

def penalty(k):
    r = softshare.penalty(weights(k), MIX, 0.1, n_threads=2)
    return r.value, r.grad_w.tobytes(), r.stats.tobytes()

def parallel_in_parent():
    # the raw binding: two threads even where the package caps them at 1 core
    _core.penalty([weights(99)], MIX.mu, MIX.log_var, MIX.logit, 0.1, 2, False)
"""


def _run(script: str, timeout: float = 60.0) -> str:
    """Run ``script`` in a fresh interpreter; a hang or a crash fails the test."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", _COMMON + textwrap.dedent(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"the scenario hung (killed after {timeout} s): {err.stderr!r}")
    assert out.returncode == 0, f"exit status {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_pool_after_a_parallel_pass() -> None:
    out = _run(
        """
        import multiprocessing as mp
        parallel_in_parent()
        expected = [penalty(k) for k in range(4)]
        with mp.get_context("fork").Pool(2) as pool:
            got = pool.map(penalty, range(4), chunksize=1)
        assert got == expected, "a forked worker's result differs"
        # the parent still runs in parallel
        assert penalty(0) == expected[0]
        print("ok")
        """
    )
    assert out.strip() == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_grandchild_and_child_forked_before_any_parallel_pass() -> None:
    out = _run(
        """
        def in_child(fn):
            # run fn() in a forked child; its result back through a pipe
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                try:
                    os.write(w, repr(fn()).encode())
                finally:
                    os._exit(0)
            os.close(w)
            data = b""
            while chunk := os.read(r, 1 << 16):
                data += chunk
            os.waitpid(pid, 0)
            return eval(data)

        # forked before the parent ran any parallel region
        early = in_child(lambda: penalty(1))
        parallel_in_parent()
        expected = penalty(1)
        assert early == expected
        # a child of a child, both after parallel passes
        def child():
            mine = penalty(1)
            parallel_in_parent()
            return mine, in_child(lambda: penalty(1))
        mine, grandchild = in_child(child)
        assert mine == expected and grandchild == expected
        print("ok")
        """
    )
    assert out.strip() == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_torch_dataloader_workers() -> None:
    pytest.importorskip("torch")
    out = _run(
        """
        import torch
        from torch.utils.data import DataLoader, Dataset

        class Penalties(Dataset):
            def __len__(self):
                return 4
            def __getitem__(self, k):
                value, grad, stats = penalty(k)
                return torch.tensor(value, dtype=torch.float64), torch.frombuffer(
                    bytearray(grad), dtype=torch.float32)

        parallel_in_parent()
        torch.set_num_threads(2)
        torch.randn(1 << 20).exp().sum()  # torch's own OpenMP pool, in the parent
        expected = [penalty(k) for k in range(4)]
        loader = DataLoader(Penalties(), batch_size=1, num_workers=2,
                            multiprocessing_context="fork")
        for k, (value, grad) in enumerate(loader):
            assert value.item() == expected[k][0]
            assert grad[0].numpy().tobytes() == expected[k][1]
        print("ok")
        """,
        timeout=180.0,
    )
    assert out.strip() == "ok"


# --- n_threads -------------------------------------------------------------------------------


@pytest.mark.parametrize("penalty", [softshare.penalty, reference.penalty])
@pytest.mark.parametrize("n_threads", [0, -2, -(2**40), 1.5, "2", True, np.bool_(True), 2.0])
def test_bad_n_threads_is_a_value_error(penalty: object, n_threads: object) -> None:
    mix = softshare.Mixture([0.0], [0.0], [0.0])
    with pytest.raises(ValueError, match=r"n_threads must be None, -1 or a positive int"):
        penalty(np.zeros(3), mix, n_threads=n_threads)  # type: ignore[operator]


@pytest.mark.parametrize("n_threads", [10**9, 2**31, 2**63, np.int64(2**40), np.uint64(2**64 - 1)])
def test_huge_n_threads_is_capped_at_the_cores(n_threads: int) -> None:
    assert as_n_threads(n_threads, 1) == cpu_count()
    mix = softshare.Mixture([0.0, 0.5], [-2.0, -3.0], [0.0, 0.0])
    w = np.random.default_rng(0).normal(0.0, 0.3, N)
    one = softshare.penalty(w, mix, n_threads=1)
    many = softshare.penalty(w, mix, n_threads=n_threads)
    assert many.value == one.value
    np.testing.assert_array_equal(many.grad_w, one.grad_w)
    reference.penalty(w[:10], mix, n_threads=n_threads)  # accepted there too


def test_n_threads_resolution() -> None:
    cores = cpu_count()
    assert as_n_threads(None, 10**6) == cores
    assert as_n_threads(None, 0) == 1
    assert as_n_threads(-1, 1) == cores
    assert as_n_threads(1, 8) == 1
    assert as_n_threads(np.int32(1), 8) == 1


@pytest.mark.skipif(not LINUX, reason="counts the threads in /proc/self/task")
def test_a_billion_threads_start_no_more_than_the_cores() -> None:
    out = _run(
        """
        before = len(os.listdir("/proc/self/task"))
        softshare.penalty(weights(0), MIX, n_threads=10**9)
        after = len(os.listdir("/proc/self/task"))
        print(after - before, len(os.sched_getaffinity(0)))
        """
    )
    started, cores = (int(x) for x in out.split())
    assert started <= cores


# --- memory ----------------------------------------------------------------------------------


@pytest.mark.skipif(not LINUX or ASAN, reason="reads /proc/self/status; not under ASan")
def test_scratch_is_only_what_the_dtype_needs() -> None:
    # float32 weights, M = 1e5: scratch for float32 only, sized for the SIMD
    # path in use (at most 1,088 bytes per component and thread, AVX-512: a
    # tile's log-terms and its z, S0/S1/S2 partials, float64 accumulators); it
    # was 6.2 KB per component for both precisions.
    out = _run(
        """
        def hwm():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        m = 100_000
        mix = softshare.Mixture(np.linspace(-1, 1, m), np.full(m, -4.0), np.zeros(m))
        w = np.zeros(100, np.float32)
        softshare.penalty(w, softshare.Mixture([0.0], [0.0], [0.0]))
        before = hwm()
        # the kernel alone (the result's own arrays are Python's business)
        _core.penalty([w], mix.mu, mix.log_var, mix.logit, 1.0, 1, False)
        print((hwm() - before) / m)
        """
    )
    assert float(out) < 1200.0, f"{float(out):.0f} bytes per component"


def _address_space_limit_works() -> bool:
    try:
        import resource
    except ImportError:
        return False
    return not ASAN and hasattr(resource, "RLIMIT_AS")


@pytest.mark.skipif(
    not LINUX or not _address_space_limit_works(),
    reason="needs Linux and RLIMIT_AS (not under AddressSanitizer, which reserves terabytes)",
)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_allocation_failure_is_a_memory_error(n_threads: int) -> None:
    # The scratch of M = 1e6 components (about 1 GB per thread) cannot fit in
    # 256 MB more address space than the interpreter has after its imports and
    # a first (threaded) call: MemoryError, and the process carries on.
    out = _run(
        f"""
        import resource
        def vm_size():
            for line in open("/proc/self/status"):
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        m = 1_000_000
        mix = softshare.Mixture(np.linspace(-1, 1, m), np.full(m, -4.0), np.zeros(m))
        w = weights(0)
        parallel_in_parent()
        limit = vm_size() + (256 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        except (ValueError, OSError) as err:
            print("skip", err)
            sys.exit(0)
        try:
            _core.penalty([w], mix.mu, mix.log_var, mix.logit, 0.1, {n_threads}, False)
        except MemoryError as err:
            print("MemoryError", err)
        else:
            print("no error")
        print(penalty(0)[0] == penalty(0)[0])
        """
    )
    if out.startswith("skip"):
        pytest.skip(f"RLIMIT_AS cannot be set here: {out}")
    first, second = out.strip().splitlines()
    assert first.startswith("MemoryError"), out
    assert "not enough memory" in first
    assert second == "True"
