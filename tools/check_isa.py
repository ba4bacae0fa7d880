"""Check that a built softshare extension only runs baseline x86-64 code
outside the kernels dispatched at run time.

Usage::

    python tools/check_isa.py dist/softshare-*.whl     # or a path to _core*.so

Disassembles the module with ``objdump`` and attributes every instruction to
its function. An instruction is *beyond baseline x86-64* (SSE2) when it is
VEX/EVEX-encoded (AVX and later: a ``v`` mnemonic, or ymm/zmm/mask
registers), or one of the SSE3/SSSE3/SSE4/BMI/FMA-era scalar or 128-bit
instructions listed below. Such instructions may only appear in functions of
the ``softshare::kernel::avx2`` and ``softshare::kernel::avx512`` namespaces,
which the module calls only after checking the CPU. Exits 1 and lists the
offenders otherwise.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ALLOWED = re.compile(r"softshare::kernel::(avx2|avx512)::")
# Non-VEX instructions newer than SSE2 (SSE3, SSSE3, SSE4.1/4.2, POPCNT, BMI1/2, ...).
NEWER = {
    "addsubps",
    "addsubpd",
    "haddps",
    "haddpd",
    "hsubps",
    "hsubpd",
    "lddqu",
    "movddup",
    "movshdup",
    "movsldup",
    "pabsb",
    "pabsw",
    "pabsd",
    "palignr",
    "phaddw",
    "phaddd",
    "phaddsw",
    "phsubw",
    "phsubd",
    "phsubsw",
    "pmaddubsw",
    "pmulhrsw",
    "pshufb",
    "psignb",
    "psignw",
    "psignd",
    "blendpd",
    "blendps",
    "blendvpd",
    "blendvps",
    "dppd",
    "dpps",
    "extractps",
    "insertps",
    "movntdqa",
    "mpsadbw",
    "packusdw",
    "pblendvb",
    "pblendw",
    "pcmpeqq",
    "pcmpgtq",
    "pextrb",
    "pextrd",
    "pextrq",
    "pinsrb",
    "pinsrd",
    "pinsrq",
    "phminposuw",
    "pmaxsb",
    "pmaxsd",
    "pmaxud",
    "pmaxuw",
    "pminsb",
    "pminsd",
    "pminud",
    "pminuw",
    "pmovsxbw",
    "pmovsxbd",
    "pmovsxbq",
    "pmovsxwd",
    "pmovsxwq",
    "pmovsxdq",
    "pmovzxbw",
    "pmovzxbd",
    "pmovzxbq",
    "pmovzxwd",
    "pmovzxwq",
    "pmovzxdq",
    "pmuldq",
    "pmulld",
    "ptest",
    "roundpd",
    "roundps",
    "roundsd",
    "roundss",
    "crc32",
    "pcmpestri",
    "pcmpestrm",
    "pcmpistri",
    "pcmpistrm",
    "popcnt",
    "lzcnt",
    "tzcnt",
    "andn",
    "bextr",
    "blsi",
    "blsmsk",
    "blsr",
    "bzhi",
    "mulx",
    "pdep",
    "pext",
    "rorx",
    "sarx",
    "shlx",
    "shrx",
    "movbe",
    "adcx",
    "adox",
}
WIDE_REG = re.compile(r"%(ymm|zmm)\d+|%k[0-7]\b")
FUNC = re.compile(r"^[0-9a-f]+ <(.+)>:$")
INSN = re.compile(r"^\s+[0-9a-f]+:\s+(?:[0-9a-f]{2} )*\s*([a-z][a-z0-9.]*)\s*(.*)$")


def beyond_baseline(mnemonic: str, operands: str) -> bool:
    """Whether one disassembled instruction needs more than SSE2."""
    base = mnemonic.split(".", maxsplit=1)[0]
    if base.startswith("v") and base not in {"verr", "verw"}:
        return True
    if WIDE_REG.search(operands):
        return True
    return base in NEWER


def extension_from(path: Path, tmp: Path) -> Path:
    """The _core extension itself: the path, or the one inside a wheel."""
    if path.suffix != ".whl":
        return path
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if re.search(r"softshare/_core.*\.(so|pyd)$", n)]
        if not names:
            sys.exit(f"{path}: no softshare/_core extension inside")
        return Path(zf.extract(names[0], tmp))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    if shutil.which("objdump") is None:
        print("objdump (binutils) is needed")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        so = extension_from(Path(argv[0]), Path(tmp))
        dis = subprocess.run(
            ["objdump", "-d", "-C", "--no-show-raw-insn", str(so)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    func = "?"
    offenders: dict[str, list[str]] = {}
    counts = {"allowed": 0, "baseline": 0}
    n_funcs = 0
    for line in dis.splitlines():
        m = FUNC.match(line)
        if m:
            func = m.group(1)
            n_funcs += 1
            continue
        m = INSN.match(line)
        if not m:
            continue
        mnemonic, operands = m.group(1), m.group(2)
        if not beyond_baseline(mnemonic, operands):
            counts["baseline"] += 1
        elif ALLOWED.search(func):
            counts["allowed"] += 1
        else:
            offenders.setdefault(func, []).append(f"{mnemonic} {operands}".strip())
    print(
        f"{so.name}: {n_funcs} functions; {counts['baseline']} baseline instructions; "
        f"{counts['allowed']} AVX2/AVX-512 instructions, all in dispatched kernels"
        if not offenders
        else f"{so.name}: instructions beyond baseline x86-64 outside the dispatched kernels:"
    )
    for f, insns in offenders.items():
        print(f"  {f}: {len(insns)} e.g. {insns[:3]}")
    if n_funcs < 10:
        print("too few symbols: is the module stripped? the check needs its symbol table")
        return 1
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
