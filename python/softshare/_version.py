"""The package version (read by the build from this file)."""

from __future__ import annotations

__version__ = "0.1.0"
