"""Pairs per cycle per core, and the limit the kernel's instruction count gives.

Two measurement aids for ``compare_peers.py`` (never part of the package):

- :func:`clock_ghz`: the core clock while vector code runs, from ``cycles.c``
  (beside this script), compiled here: a chain of dependent integer additions
  (one cycle each) timed among 512-bit FMAs, on as many threads as the
  benchmark uses. A VM's cores change clock with the host's load, so the
  probe runs right before and right after the timed calls.
- :func:`instruction_counts`: from the disassembly (``objdump``) of the compiled
  AVX-512 float32 kernel (``process_block<float>``), the micro-ops its loops
  issue to the two 512-bit vector pipes (ports 0 and 5: every FMA, add,
  compare, vreduce, vscalef ...; loads, stores and eliminated register moves
  use other ports): per component and tile (passes 1-3, pass 3 of a tile
  sharing its loop with pass 1 of the next, and 3 / kSubTiles of the flush of
  the float32 partial sums into float64) and per tile (the
  log-sum-exp's log, the divisions, sum L, grad_w's scaling and check). At M
  components a tile of 64 weights needs at least ``(M x per-component +
  per-tile) / 2`` cycles: that bound, as pairs per cycle, is the limit.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPES = 2  # 512-bit vector pipes of an AVX-512 core (ports 0 and 5)
TILE = 64  # weights per tile of the AVX-512 float32 kernel (4 vectors of 16)
SUB_TILES = 8  # tiles between flushes of the float32 partial sums (types.hpp kSubTiles)
_MOVES = re.compile(r"^vmov(aps|ups|apd|upd|dqa32|dqa64|dqu32|dqu64|ss|sd)$")


def build_probe() -> ctypes.CDLL | None:
    """Compile ``cycles.c`` and load it; None without a C compiler or off x86-64."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    lib = Path(tempfile.mkdtemp(prefix="softshare-cycles-")) / "cycles.so"
    cmd = [compiler, "-O2", "-fopenmp", "-shared", "-fPIC", "-o", str(lib), str(HERE / "cycles.c")]
    if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
        return None
    dll = ctypes.CDLL(str(lib))
    dll.softshare_clock_ghz.restype = ctypes.c_double
    dll.softshare_clock_ghz.argtypes = [ctypes.c_int, ctypes.c_int]
    return dll


def clock_ghz(dll: ctypes.CDLL, threads: int) -> float:
    """The highest clock (GHz) of ``threads`` threads running 512-bit vector code (best of five)."""
    return float(dll.softshare_clock_ghz(threads, 1))


def uops(op: str, args: str) -> int:
    """Micro-ops one instruction sends to the vector pipes (0: loads, stores, moves)."""
    if not op.startswith("v"):
        return 0
    if op.startswith("vbroadcast") or (_MOVES.match(op) and "{" not in args):
        return 0 if "(" in args or _MOVES.match(op) else 1
    if op == "vzeroupper" or (op in ("vxorps", "vpxord") and len(set(args.split(","))) == 1):
        return 0  # zero idiom
    if op.startswith(("vdiv", "vsqrt")):
        return 3
    if op.startswith(("vrndscale", "vcvtps2pd", "vcvtpd2ps")):
        return 2
    return 1


@dataclass(frozen=True)
class Counts:
    """Vector-pipe micro-ops of the AVX-512 float32 kernel."""

    passes: tuple[int, int, int]  # per component and tile: passes 1, 2, 3
    flush: int  # per component and sum (S0, S1, S2), once every SUB_TILES tiles
    tile: int  # per tile, whatever M

    def per_component(self) -> float:
        """Per component and tile, the flush included."""
        return sum(self.passes) + 3 * self.flush / SUB_TILES

    def limit(self, m: int) -> float:
        """Pairs per cycle per core that the instruction count allows at M components."""
        return TILE * m * PIPES / (m * self.per_component() + self.tile)


def _instructions(so: Path) -> list[tuple[int, str, str]]:
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-C", str(so)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    head = re.search(
        r"^[0-9a-f]+ <[^\n]*avx512::process_block<float>\([^\n]*>:$", out, re.MULTILINE
    )
    if head is None:
        return []
    body = out[head.end() + 1 : out.find("\n\n", head.end())]
    rows = []
    for line in body.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(\S+)\s*(.*)", line)
        if m:
            rows.append((int(m.group(1), 16), m.group(2), m.group(3)))
    return rows


def instruction_counts(so: Path) -> Counts | None:
    """Count the kernel's micro-ops in its disassembly; None where that fails."""
    if shutil.which("objdump") is None:
        return None
    rows = _instructions(so)
    index = {addr: k for k, (addr, _, _) in enumerate(rows)}
    loops = []  # (first, last) row of each backward jump's loop
    for k, (_, op, args) in enumerate(rows):
        target = re.match(r"([0-9a-f]+)", args)
        if op.startswith("j") and target and int(target.group(1), 16) in index:
            first = index[int(target.group(1), 16)]
            if first <= k:
                loops.append((first, k))
    inner = [
        (a, b)
        for a, b in loops
        if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)
    ]

    def span(a: int, b: int) -> int:  # the micro-ops of rows[a:b]
        return sum(uops(op, args) for _, op, args in rows[a:b])

    cost = [span(a, b + 1) for a, b in inner]

    def has(k: int, name: str) -> bool:
        return any(op == name for _, op, _ in rows[inner[k][0] : inner[k][1] + 1])

    # The pipelined tiles (block-inl.hpp pipelined_tiles): pass 1 of the first
    # tile (a loop with vmaxps), then per tile pass 2 (vreduceps) and one loop
    # of pass 3 and the next tile's pass 1 (vmaxps, the costliest), then the
    # flush (vcvtps2pd).
    with_max = [k for k in range(len(inner)) if has(k, "vmaxps") and cost[k] >= 16]
    if len(with_max) < 2:
        return None
    fused = max(with_max, key=lambda k: cost[k])
    p1 = min(cost[k] for k in with_max)
    p2 = next((k for k in range(fused) if has(k, "vreduceps") and cost[k] >= 16), None)
    flush = next((k for k in range(fused + 1, len(inner)) if has(k, "vcvtps2pd")), None)
    if p2 is None or flush is None or cost[fused] <= p1:
        return None
    # Per tile: from pass 2's end to the fused loop (the log-sum-exp's log, the
    # divisions, the next tile's load) and from its end to the first branch
    # (grad_w's scaling and check; then the flush test).
    after = inner[fused][1] + 1
    while after < len(rows) and not (rows[after][1].startswith("j") and rows[after][1] != "jmp"):
        after += 1
    tile = span(inner[p2][1] + 1, inner[fused][0]) + span(inner[fused][1] + 1, after)
    return Counts((p1, cost[p2], cost[fused] - p1), cost[flush], tile)


def core_so() -> Path:
    """The compiled module softshare imports."""
    from softshare import _core

    return Path(_core.__file__)
