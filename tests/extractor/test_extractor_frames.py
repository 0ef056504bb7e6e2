"""Frames between the pool and its workers: JSON objects and raw bytes only."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import pytest

from services.extractor import frames


async def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_frame_carries_a_message_and_bytes_across_a_socket() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, theirs.makefile("rb") as incoming:
        frames.send(ours, {"s3_key": "uploads/a.pdf"}, b"%PDF-1.4 \x00\xff")

        message, body = frames.receive(incoming)

    assert message == {"s3_key": "uploads/a.pdf"}
    assert body == b"%PDF-1.4 \x00\xff"


def test_receive_says_eof_once_the_other_side_is_gone() -> None:
    ours, theirs = socket.socketpair()
    with theirs, theirs.makefile("rb") as incoming:
        ours.close()

        with pytest.raises(EOFError):
            frames.receive(incoming)


def test_receive_says_eof_for_a_frame_cut_short() -> None:
    ours, theirs = socket.socketpair()
    with theirs, theirs.makefile("rb") as incoming:
        ours.sendall(b"".join(frames.pack({"a": 1}, b"0123456789"))[:-3])
        ours.close()

        with pytest.raises(EOFError):
            frames.receive(incoming)


async def test_read_gives_the_message() -> None:
    reader = await reader_of(b"".join(frames.pack({"outcome": "extracted"})))

    assert await frames.read(reader, max_bytes=1024) == {"outcome": "extracted"}


async def test_read_refuses_a_frame_over_the_limit_before_reading_it() -> None:
    reader = await reader_of(b"".join(frames.pack({"text": "x" * 2000})))

    with pytest.raises(frames.FrameError):
        await frames.read(reader, max_bytes=1024)


async def test_read_refuses_bytes_after_a_reply() -> None:
    reader = await reader_of(b"".join(frames.pack({"outcome": "x"}, b"extra")))

    with pytest.raises(frames.FrameError):
        await frames.read(reader, max_bytes=1024)


@pytest.mark.parametrize("payload", [b"not json", json.dumps([1, 2]).encode()])
async def test_read_refuses_anything_but_a_json_object(payload: bytes) -> None:
    reader = await reader_of(struct.pack("!II", len(payload), 0) + payload)

    with pytest.raises(frames.FrameError):
        await frames.read(reader, max_bytes=1024)


async def test_read_of_a_stream_that_ends_early_is_an_incomplete_read() -> None:
    reader = await reader_of(b"".join(frames.pack({"outcome": "x"}))[:-2])

    with pytest.raises(asyncio.IncompleteReadError):
        await frames.read(reader, max_bytes=1024)
