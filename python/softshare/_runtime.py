"""How the compiled kernel runs: OpenMP and the SIMD instruction set it uses."""

from __future__ import annotations

import os
import warnings

from . import _core

__all__ = ["has_openmp", "simd_target", "simd_targets"]


def has_openmp() -> bool:
    """Whether the compiled kernel runs in parallel with OpenMP.

    Returns
    -------
    bool
        False when the extension was built without OpenMP; ``n_threads`` is
        then accepted but the pass runs on one thread.
    """
    return bool(_core.has_openmp())


def simd_target() -> str:
    """The instruction set of the kernel in use.

    Returns
    -------
    str
        ``"avx512"``, ``"avx2"`` or ``"baseline"`` (portable code for the
        compiler's default target). The best one this CPU supports is picked at
        import; the environment variable ``SOFTSHARE_SIMD`` forces a lower one.
    """
    return str(_core.simd_target())


def simd_targets() -> list[str]:
    """The instruction sets this build has and this CPU runs, lowest first.

    Returns
    -------
    list of str
        For example ``["baseline", "avx2", "avx512"]``.
    """
    return [str(t) for t in _core.simd_targets()]


def _select_simd_from_env() -> None:
    """Apply ``SOFTSHARE_SIMD`` (baseline, avx2, avx512) if it is set."""
    name = os.environ.get("SOFTSHARE_SIMD", "").strip().lower()
    if not name:
        return
    if name not in simd_targets():
        warnings.warn(
            f"SOFTSHARE_SIMD={name!r} is not one of the targets this CPU supports "
            f"{simd_targets()}; using {simd_target()!r}",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _core.set_simd_target(name)
