"""Turning bytes into text: byte-order marks, UTF-8, then a Western fallback.

Decoding is strict at every step, so a wrong guess fails instead of quietly
turning accents into mojibake; ``DocumentRejected("undecodable_text")`` is
raised only when no candidate fits.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from typing import Final

from charset_normalizer import from_bytes

from shared.errors import DocumentRejected

# Longest marks first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Documents in this mesh are mostly Western European; trying these first keeps
# charset-normalizer from picking an exotic code page for a few accented bytes.
_WESTERN: Final = ["cp1252", "iso8859_15", "latin_1"]
_SAMPLE: Final = 8192
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MAX_CONTROL_SHARE: Final = 0.05


@dataclass(frozen=True)
class DecodedText:
    """Text decoded from bytes, with the codec that decoded it."""

    text: str
    encoding: str
    """Python's canonical codec name, e.g. ``utf-8``, ``utf-8-sig``, ``cp1252``."""


def has_bom(data: bytes) -> bool:
    """Whether the bytes start with a Unicode byte-order mark."""
    return any(data.startswith(bom) for bom, _ in _BOMS)


def looks_binary(data: bytes) -> bool:
    """Whether the start of the bytes looks like a binary file rather than text."""
    if has_bom(data):
        return False

    sample = data[:_SAMPLE]
    if b"\x00" in sample:
        return True
    controls = len(_CONTROL.findall(sample.decode("latin-1")))
    return controls > len(sample) * _MAX_CONTROL_SHARE


def decode_text(data: bytes) -> DecodedText:
    """Decode a text document, trying its BOM, then UTF-8, then likely code pages.

    The BOM is not part of the returned text.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _decode_strict(data, codec)

    try:
        return DecodedText(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass

    guess = from_bytes(data, cp_isolation=_WESTERN).best()
    if guess is None:
        guess = from_bytes(data).best()
    if guess is None:
        raise DocumentRejected(
            "undecodable_text",
            "The text is neither UTF-8 nor in a character encoding that could "
            "be recognised",
        )
    return _decode_strict(data, guess.encoding)


def clean_text(text: str) -> str:
    """Drop what downstream stores refuse: NUL characters and lone surrogates.

    PostgreSQL's JSONB rejects ``\\u0000``, and a lone surrogate cannot be
    encoded as UTF-8; broken PDF font maps produce both.
    """
    text = text.replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


def _decode_strict(data: bytes, codec: str) -> DecodedText:
    name = codecs.lookup(codec).name
    try:
        text = data.decode(name)
    except UnicodeDecodeError as exc:
        raise DocumentRejected(
            "undecodable_text",
            f"The text is not valid {name}: byte {exc.start} cannot be decoded",
        ) from exc

    # The codecs consume one BOM; a second one (a file saved twice) would stay.
    return DecodedText(text.removeprefix("\ufeff"), name)
