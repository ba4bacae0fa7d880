"""softshare demo: the command line, the recipe end to end, and its figures."""

from __future__ import annotations
