"""Decoding text documents: byte-order marks, UTF-8, Western fallbacks."""

from __future__ import annotations

import codecs

import pytest

from services.extractor.text import clean_text, decode_text, has_bom, looks_binary
from shared.errors import DocumentRejected


def test_decode_utf8_without_bom() -> None:
    decoded = decode_text("Grüße, café".encode())

    assert (decoded.text, decoded.encoding) == ("Grüße, café", "utf-8")


def test_decode_strips_utf8_bom() -> None:
    decoded = decode_text(codecs.BOM_UTF8 + b"REPORT 1")

    assert (decoded.text, decoded.encoding) == ("REPORT 1", "utf-8-sig")


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_decode_utf16_and_utf32_by_their_bom(codec: str) -> None:
    decoded = decode_text("Libellé €".encode(codec))

    assert decoded.text == "Libellé €"
    assert decoded.encoding == codec


def test_decode_falls_back_to_cp1252_for_western_text() -> None:
    decoded = decode_text("Libellé;Débit;SUPERMARCHÉ;€ 12".encode("cp1252"))

    assert decoded.text == "Libellé;Débit;SUPERMARCHÉ;€ 12"
    assert decoded.encoding == "cp1252"


def test_decode_broken_utf16_after_bom_is_undecodable() -> None:
    with pytest.raises(DocumentRejected) as caught:
        decode_text(codecs.BOM_UTF16_LE + b"\x00\xd8")

    assert caught.value.reason == "undecodable_text"


@pytest.mark.parametrize(
    ("data", "binary"),
    [
        (b"plain text\nwith lines\t and tabs\r\n", False),
        ("naïve €".encode("cp1252"), False),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", True),
        (bytes(range(32)) * 4, True),
        (codecs.BOM_UTF16_LE + "text".encode("utf-16-le"), False),
    ],
)
def test_looks_binary(data: bytes, binary: bool) -> None:
    assert looks_binary(data) is binary


def test_has_bom() -> None:
    assert has_bom(codecs.BOM_UTF8 + b"x")
    assert not has_bom(b"x")


def test_clean_text_drops_nul_and_lone_surrogates() -> None:
    assert clean_text("a\x00b\ud800c") == "ab?c"
