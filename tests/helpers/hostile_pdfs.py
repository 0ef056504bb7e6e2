"""Pathological PDFs, made in the test: each small, each costly to read."""

from __future__ import annotations

import zlib

_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_MIB = 1024 * 1024


def pdf(objects: list[bytes], *, trailer: bool = True) -> bytes:
    """A PDF of ``objects`` numbered from 1 (1 the catalog), with a correct
    cross-reference table; without a trailer if asked (a damaged file)."""
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    if trailer:
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return out


def one_page(
    content: bytes, *, stream_entries: bytes = b"", kids: bytes = b"[3 0 R]"
) -> bytes:
    """A page whose content stream is ``content`` (``stream_entries`` go
    into the stream's dictionary, ``kids`` is the page tree's list)."""
    count = kids.count(b" R")
    return pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Count %d /Kids %s >>" % (count, kids),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d %s >>\nstream\n%s\nendstream"
            % (len(content), stream_entries, content),
            _FONT,
        ]
    )


def deeply_nested(depth: int = 100_000) -> bytes:
    """A text operator whose operand is an array nested ``depth`` deep."""
    nested = b"[" * depth + b"(x)" + b"]" * depth
    return one_page(b"BT /F1 12 Tf 50 700 Td " + nested + b" TJ ET")


def many_pages(count: int = 100_000) -> bytes:
    """A page tree listing one page ``count`` times: 6 bytes a page."""
    return one_page(
        b"BT /F1 12 Tf 50 700 Td (Hello) Tj ET", kids=b"[" + b"3 0 R " * count + b"]"
    )


def inflating(mib: int = 2048) -> bytes:
    """A decompression bomb: a FlateDecode stream of about ``mib`` KiB that
    inflates to ``mib`` MiB of zeros."""
    return one_page(_zeros_deflated(mib), stream_entries=b"/Filter /FlateDecode")


def _zeros_deflated(mib: int) -> bytes:
    # Compressing gigabytes would take seconds. After a full flush a deflate
    # stream starts afresh, so one compressed MiB of zeros can be repeated;
    # the zlib checksum of n zero bytes is (n mod 65521) << 16 | 1.
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = raw.compress(bytes(_MIB)) + raw.flush(zlib.Z_FULL_FLUSH)
    checksum = ((mib * _MIB) % 65521) << 16 | 1
    return b"\x78\xda" + block * mib + raw.flush() + checksum.to_bytes(4, "big")


def slow_to_parse(operators: int = 100_000) -> bytes:
    """A few kilobytes that take pypdf seconds per 20,000 ``operators``:
    each positions and shows a line of text, read twice (plain, layout)."""
    line = b"1 0 0 1 50 700 Tm (Invoice line text) Tj "
    content = zlib.compress(b"BT /F1 12 Tf " + line * operators + b"ET", 9)
    return one_page(content, stream_entries=b"/Filter /FlateDecode")
