"""The native penalty pass against the NumPy reference: SIMD paths, threads, extremes, memory."""

from __future__ import annotations
