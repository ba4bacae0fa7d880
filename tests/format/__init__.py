"""The compressed model file and the quantized export: round trips, codecs, hostile files."""

from __future__ import annotations
