"""Messages between the extraction pool and its workers: JSON, never pickle.

A worker has parsed a document from outside; if that ever let the document
take the worker over, what the worker sends back must still be harmless to
the extractor. So every message is a JSON object, optionally followed by raw
bytes (the document on the way in), behind a fixed prefix:

    !II   length of the JSON object, length of the bytes
    JSON  UTF-8, an object
    bytes

The pool reads with asyncio streams, the worker with a blocking socket.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from typing import Any, BinaryIO, Final

_PREFIX: Final = struct.Struct("!II")

Message = dict[str, Any]


class FrameError(Exception):
    """The other side sent something that is not a frame of this protocol."""


def pack(message: Message, body: bytes = b"") -> list[bytes]:
    """The parts of one frame, to be written in order."""
    encoded = json.dumps(message, separators=(",", ":")).encode()
    return [_PREFIX.pack(len(encoded), len(body)), encoded, body]


def send(channel: socket.socket, message: Message, body: bytes = b"") -> None:
    """Write one frame to a blocking socket."""
    for part in pack(message, body):
        channel.sendall(part)


def receive(stream: BinaryIO) -> tuple[Message, bytes]:
    """Read one frame from a blocking stream; ``EOFError`` once it is closed."""
    prefix = _exactly(stream, _PREFIX.size)
    json_length, body_length = _PREFIX.unpack(prefix)
    message = _decode(_exactly(stream, json_length))
    return message, _exactly(stream, body_length) if body_length else b""


async def read(reader: asyncio.StreamReader, *, max_bytes: int) -> Message:
    """Read one frame without a body, at most ``max_bytes`` long.

    Raises ``asyncio.IncompleteReadError`` when the stream ends first and
    ``FrameError`` for anything else that is not a frame.
    """
    json_length, body_length = _PREFIX.unpack(await reader.readexactly(_PREFIX.size))
    if body_length or json_length > max_bytes:
        raise FrameError(f"unexpected frame ({json_length} + {body_length} bytes)")
    return _decode(await reader.readexactly(json_length))


def _exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the channel closed")
    return data


def _decode(data: bytes) -> Message:
    try:
        message = json.loads(data)
    except ValueError as exc:
        raise FrameError("not JSON") from exc
    if not isinstance(message, dict):
        raise FrameError("not a JSON object")
    return message
