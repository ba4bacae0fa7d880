"""The compressed model file's format (docs/format.md): header, layout and checks, atomic writes, npz reading.

Private: :mod:`softshare.compress` (``write_file``, ``read_file``) and
:mod:`softshare.torch` (``save_compressed``) are its public faces.
"""

from __future__ import annotations
