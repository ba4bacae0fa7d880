"""The repository itself: the package's shape and import graph, the README and docs' examples."""

from __future__ import annotations
