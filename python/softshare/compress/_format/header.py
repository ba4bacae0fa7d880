"""The compressed model file's header stream: codebook, layer names, shapes, dtypes and mixture.

Every value goes through the native core's adaptive arithmetic coder: a name
as numbers, words and bytes, each "as in the previous name" or against what
came before (a move-to-front word list seeded with common parameter names); a
dimension as one of the 8 most recent or a new number; a float as sign,
exponent change and raw mantissa. docs/format.md gives the exact order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ... import _core
from ..._mixture import Mixture

if TYPE_CHECKING:
    from numpy.typing import NDArray

#: Limits on what a header may declare (each checked before anything is allocated for it).
MAX_CODEBOOK = 1 << 24
MAX_NAME_BYTES = 4096
MAX_NDIM = 32
MAX_DIM = 1 << 48
MAX_COMPONENTS = 1 << 16
MAX_LAYERS = 1 << 20
MAX_WORDS = 256  # the move-to-front list of words keeps the most recent ones only
# per byte of header: layers and bytes of names (real headers: < 1 and about 10)
LAYERS_PER_BYTE, NAME_BYTES_PER_BYTE = 4, 64

#: Words a layer name most likely holds, in the order the word list starts with.
WORDS = (
    b"weight bias running mean var num batches tracked conv bn fc layer layers features "
    b"classifier downsample block blocks attn attention self proj mlp norm ln embed embeddings "
    b"head encoder decoder linear lin out in q k v query key value dense kernel scale gamma beta "
    b"model module net backbone stem w b"
).split()

_TOKEN = re.compile(rb"[1-9][0-9]{0,17}|0|[A-Za-z]+|.", re.DOTALL)
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
END, NUM, WORD, BYTE = range(4)
#: The dtypes of tensors stored exactly (format version 2), by their code in the header.
EXACT_DTYPES = (
    "float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16",
    "uint32", "uint64", "bool",
)  # fmt: skip
_FLOATS = {False: ("float32", "uint32", 8, 23), True: ("float64", "uint64", 11, 52)}

# Context numbers of the coder's models (each names one adaptive model or tree).
(C_COUNT, C_FLAG, C_KIND, C_SAME, C_NUM, C_STEP, C_WORD, C_LEN, C_LETTER, C_BYTE, C_DTYPE, C_NDIM,
 C_DIM, C_DIMNEW, C_SIGN, C_EXP, C_ZERO) = (i * 64 for i in range(17))  # fmt: skip


@dataclass
class Header:
    """What the header stream holds."""

    codebook: NDArray[np.floating]  # float32 or float64, 1-D, finite
    names: list[str]
    shapes: list[tuple[int, ...]]
    float64: list[bool]  # each layer's dtype: float64 (True) or float32
    mixture: Mixture | None
    codebook_bytes: int = 0  # bytes of the stream that the codebook took (set by the coders)
    # format version 2: tensors stored exactly (raw bytes after the layer stream)
    exact_names: list[str] = field(default_factory=list)
    exact_shapes: list[tuple[int, ...]] = field(default_factory=list)
    exact_dtypes: list[str] = field(default_factory=list)  # names from EXACT_DTYPES


def _tokens(name: bytes) -> list[tuple[int, bytes]]:
    """A name's tokens (kind, text): numbers, words (runs of ASCII letters), single bytes."""
    texts: list[bytes] = _TOKEN.findall(name)
    return [(NUM if t[:1].isdigit() else WORD if t[:1] in _LETTERS else BYTE, t) for t in texts]


def _zigzag(v: int) -> int:  # 0, -1, 1, -2, ... as 0, 1, 2, 3, ...; _unzigzag undoes it
    return 2 * v if v >= 0 else -2 * v - 1


def _unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


class _Coder:
    """One side of the header stream: the same walk encodes (values given) or decodes."""

    def __init__(self, enc: _core.StreamEncoder | None, dec: _core.StreamDecoder | None) -> None:
        self.enc, self.dec = enc, dec
        self.words: list[bytes] = list(WORDS)
        self.dims: list[int] = []
        self.tokens: list[tuple[int, bytes]] | None = None  # the previous name's
        self.name_budget: int | None = None  # bytes of names a decoder may still make

    def _code(self, op: str, v: int, *args: int) -> int:
        """``v`` through the encoder's ``op`` (bit, symbol, uint, raw), or the decoded value."""
        if self.enc is not None:
            getattr(self.enc, op)(*args, v)
            return v
        return int(getattr(self.dec, op)(*args))

    def bit(self, ctx: int, y: int = 0) -> int:
        return self._code("bit", y, ctx)

    def symbol(self, ctx: int, n: int, v: int = 0) -> int:
        return self._code("symbol", v, ctx, n)

    def uint(self, ctx: int, v: int = 0) -> int:
        return self._code("uint", v, ctx)

    def raw(self, nbits: int, v: int = 0) -> int:
        return self._code("raw", v, nbits)

    def position(self) -> int:  # bytes of the stream written (or read) so far
        return self.enc.size() if self.enc is not None else self.dec.position()  # type: ignore[union-attr]

    def check(self, what: str) -> None:
        """A decoder that ran out of bytes: the header is truncated or corrupt."""
        if self.dec is not None and self.dec.overrun():
            msg = f"the header ends inside {what} (truncated or corrupt)"
            raise ValueError(msg)

    def floats(self, ctx: int, values: NDArray[Any], f8: bool, what: str) -> NDArray[Any]:
        """Sign (context: the previous sign), exponent change, and raw mantissa of each value."""
        ftype, utype, exp_bits, mant_bits = _FLOATS[f8]
        bits = np.asarray(values, dtype=ftype).view(utype).tolist()
        out = np.empty(len(bits), dtype=utype)
        prev_sign, prev_exp = 0, (1 << (exp_bits - 1)) - 1
        for i, u in enumerate(bits):
            sign = self.bit(ctx + C_SIGN + prev_sign, u >> (exp_bits + mant_bits))
            exp = (u >> mant_bits) & ((1 << exp_bits) - 1)
            exp = prev_exp + _unzigzag(self.uint(ctx + C_EXP, _zigzag(exp - prev_exp)))
            self.check(what)
            if not 0 <= exp < (1 << exp_bits) - 1:
                msg = f"{what}[{i}] is not a finite number (exponent {exp})"
                raise ValueError(msg)
            mant = u & ((1 << mant_bits) - 1)
            if exp or not self.bit(ctx + C_ZERO, int(mant == 0)):
                mant = self.raw(mant_bits, mant)
            out[i] = (sign << (exp_bits + mant_bits)) | (exp << mant_bits) | mant
            prev_sign, prev_exp = sign, (exp or prev_exp)
        return out.view(ftype)

    def name(self, name: bytes) -> bytes:
        """A layer name, token by token, each against the previous name's token at its place."""
        prev, tokens = self.tokens, _tokens(name)
        out: list[tuple[int, bytes]] = []
        size = 0
        for t in range(MAX_NAME_BYTES + 1):
            kind, text = tokens[t] if t < len(tokens) else (END, b"")
            before = prev[t] if prev is not None and t < len(prev) else (END, b"")
            kind = self.symbol(C_KIND + (before[0] if prev is not None else 4), 4, kind)
            if kind == END:
                self.tokens = out
                return b"".join(text for _, text in out)
            if kind == before[0] and self.bit(C_SAME + kind, int(text == before[1])):
                text = before[1]
            elif kind == NUM:
                text = str(self._number(int(text or 0), before)).encode()
            elif kind == WORD:
                text = self._word(text)
            else:
                text = bytes([self.symbol(C_BYTE, 256, text[0] if text else 0)])
            out.append((kind, text))
            size += len(text)
            if size > MAX_NAME_BYTES:
                break
            if self.name_budget is not None:
                self.name_budget -= len(text)
                if self.name_budget < 0:
                    msg = "the layer names are longer than a header of its size can hold (corrupt)"
                    raise ValueError(msg)
            self.check("a layer name")
        msg = f"a layer name is longer than {MAX_NAME_BYTES} bytes"
        raise ValueError(msg)

    def _number(self, value: int, before: tuple[int, bytes]) -> int:
        if before[0] != NUM:
            return self.uint(C_NUM, value)
        base = int(before[1])  # a step from the previous name's number (never 0 here)
        step = value - base
        u = self.uint(C_STEP, 2 * (step - 1) if step > 0 else -2 * step - 1)
        value = base + (u // 2 + 1 if u % 2 == 0 else -(u + 1) // 2)
        if value < 0:
            msg = "a number in a layer name is negative (corrupt header)"
            raise ValueError(msg)
        return value

    def _word(self, word: bytes) -> bytes:
        """A word: its place in the list of words seen (most recent first), or its letters."""
        known = self.enc is not None and word in self.words
        at = self.uint(C_WORD, self.words.index(word) + 1 if known else 0)
        if at > len(self.words):
            msg = f"a layer name refers to word {at} of {len(self.words)} (corrupt header)"
            raise ValueError(msg)
        if at:
            word = self.words.pop(at - 1)
        else:
            n = self.uint(C_LEN, len(word) - 1 if word else 0) + 1
            if n > MAX_NAME_BYTES:
                msg = f"a layer name is longer than {MAX_NAME_BYTES} bytes"
                raise ValueError(msg)
            letters = [self.symbol(C_LETTER, 52, _LETTERS.find(c)) for c in word or bytes(n)]
            word = bytes(_LETTERS[i] for i in letters)
            if self.dec is not None and word in self.words:  # the encoder refers to known words
                msg = f"a layer name spells out the known word {word[:40]!r} (corrupt header)"
                raise ValueError(msg)
        self.words.insert(0, word)
        del self.words[MAX_WORDS:]
        return word

    def shape(self, shape: tuple[int, ...], prev_ndim: int) -> tuple[int, ...]:
        """Number of dimensions, then each one: one of the 8 most recent, or a new number."""
        ndim = self.symbol(C_NDIM + min(prev_ndim, 8), MAX_NDIM + 1, len(shape))
        dims = []
        for d in range(ndim):
            size = shape[d] if d < len(shape) else 0
            slot = self.symbol(
                C_DIM + min(d, 3), 9, self.dims.index(size) if size in self.dims else 8
            )
            if slot < len(self.dims):
                size = self.dims.pop(slot)
            elif slot < 8:
                msg = f"a shape refers to recent dimension {slot} of {len(self.dims)} (corrupt)"
                raise ValueError(msg)
            elif (size := self.uint(C_DIMNEW, size)) > MAX_DIM:
                msg = f"a dimension of {size} is over the limit of {MAX_DIM}"
                raise ValueError(msg)
            self.dims = [size, *self.dims][:8]
            dims.append(size)
        return tuple(dims)


def _walk(c: _Coder, h: Header | None, size: int, version: int) -> Header:
    """Code the whole header (from ``h`` when encoding, into the result when decoding).

    ``size``, the stream's bytes, limits what a decoder accepts: at most 8 floats,
    4 layers and 64 bytes of names per byte (beyond the absolute limits).
    """
    max_floats = 8 * size + 8
    max_layers = min(MAX_LAYERS, LAYERS_PER_BYTE * size + 64)
    c.name_budget = NAME_BYTES_PER_BYTE * size + MAX_NAME_BYTES if c.dec else None
    k = c.uint(C_COUNT, h.codebook.size if h else 0)
    if k > min(MAX_CODEBOOK, max_floats):
        msg = f"the codebook has {k} values: over the limit of {min(MAX_CODEBOOK, max_floats)}"
        raise ValueError(msg)
    f8 = bool(c.bit(C_FLAG, int(h.codebook.dtype == np.float64) if h else 0))
    has_mixture = bool(c.bit(C_FLAG + 1, int(h.mixture is not None) if h else 0))
    n_layers = c.uint(C_COUNT + 1, len(h.names) if h else 0)
    if n_layers > max_layers:
        msg = f"the header declares {n_layers} layers: over the limit of {max_layers} for its size"
        raise ValueError(msg)
    c.check("the counts")
    start = c.position()
    codebook = c.floats(0, h.codebook if h else np.zeros(k), f8, "the codebook")
    codebook_bytes = c.position() - start
    out, seen = Header(codebook, [], [], [], None, codebook_bytes), set()
    prev_ndim = prev_f8 = 0

    def name(given: str | None, i: int) -> str:
        raw = c.name(given.encode() if given is not None else b"")
        try:
            decoded = raw.decode()
        except UnicodeDecodeError:
            msg = f"the name of layer {i} is not UTF-8: {raw[:60]!r}"
            raise ValueError(msg) from None
        if decoded in seen:
            msg = f"layer name {decoded!r} appears twice"
            raise ValueError(msg)
        seen.add(decoded)
        return decoded

    for i in range(n_layers):
        layer = name(h.names[i] if h else None, i)
        prev_f8 = c.bit(C_DTYPE + prev_f8, int(h.float64[i]) if h else 0)
        shape = c.shape(h.shapes[i] if h else (), prev_ndim)
        prev_ndim = len(shape)
        out.names.append(layer)
        out.shapes.append(shape)
        out.float64.append(bool(prev_f8))
        c.check(f"layer {layer!r}")
    if has_mixture:
        m = c.uint(C_COUNT + 2, h.mixture.n_components if h and h.mixture else 0)
        limit = min(MAX_COMPONENTS, max_floats // 3)
        if not 1 <= m <= limit:
            msg = f"the mixture has {m} components: outside [1, {limit}]"
            raise ValueError(msg)
        mix = h.mixture if h else None
        params = np.concatenate([mix.mu, mix.log_var, mix.logit]) if mix else np.zeros(3 * m)
        values = c.floats(8, params, True, "the mixture")  # its own models: contexts + 8
        out.mixture = Mixture(values[:m], values[m : 2 * m], values[2 * m :])
    if version >= 2:
        n_exact = c.uint(C_COUNT + 3, len(h.exact_names) if h else 0)
        if n_exact > max_layers - n_layers:
            msg = f"the header declares {n_exact} exact tensors: over the limit for its size"
            raise ValueError(msg)
        for i in range(n_exact):
            tensor = name(h.exact_names[i] if h else None, n_layers + i)
            code = EXACT_DTYPES.index(h.exact_dtypes[i]) if h else 0
            code = c.symbol(C_DTYPE + 2, 16, code)
            if code >= len(EXACT_DTYPES):
                msg = f"exact tensor {tensor!r} has dtype code {code}: not a known dtype"
                raise ValueError(msg)
            shape = c.shape(h.exact_shapes[i] if h else (), prev_ndim)
            prev_ndim = len(shape)
            out.exact_names.append(tensor)
            out.exact_shapes.append(shape)
            out.exact_dtypes.append(EXACT_DTYPES[code])
            c.check(f"exact tensor {tensor!r}")
    return out


def encode_header(h: Header, version: int) -> tuple[bytes, int]:
    """The header stream's bytes, and how many of them the codebook takes."""
    enc = _core.StreamEncoder()
    walked = _walk(_Coder(enc, None), h, size=1 << 62, version=version)
    data = enc.finish()
    return data, walked.codebook_bytes


def decode_header(data: bytes, version: int) -> Header:
    """The header from its stream; a ValueError says what is wrong with it."""
    dec = _core.StreamDecoder(data)
    h = _walk(_Coder(None, dec), None, size=len(data), version=version)
    _Coder(None, dec).check("its last value")
    if (extra := len(data) - dec.position()) > 1:  # the encoder's last byte may be unneeded
        msg = f"the header holds {extra} bytes beyond its values (corrupt)"
        raise ValueError(msg)
    return h
