"""One extraction worker: a child process that parses documents, one at a time.

The pool starts it through multiprocessing's forkserver, with this module
already imported, and talks to it over one socket (:mod:`frames`). The
worker caps its own address space, so that a document needing too much
memory ends in ``MemoryError`` here instead of hurting the extractor, and
makes sure it never outlives the extractor: idle, it notices the socket
closing; busy, the kernel kills it when its parent (the forkserver, which
exits with the extractor) is gone. Linux only, for the busy case: elsewhere
a worker ends once its document does.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import forkserver
from typing import Any, Final

from services.extractor import frames
from services.extractor.extraction import extract
from shared.errors import DocumentRejected
from shared.logging import configure_logging

_PR_SET_PDEATHSIG: Final = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class ExtractionRequest:
    """One document's job, as it crosses to the worker (plain JSON fields)."""

    s3_key: str
    content_type: str | None
    max_pdf_pages: int
    max_text_chars: int
    max_table_rows: int


Job = Callable[[bytes, ExtractionRequest], dict[str, Any]]
"""What a worker runs for each document: bytes in, a JSON-ready result out;
``DocumentRejected`` when the document cannot be read."""


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs to know, fixed when it starts."""

    job: Job
    memory_bytes: int
    service_name: str
    log_level: str


def run_extraction(data: bytes, request: ExtractionRequest) -> dict[str, Any]:
    """The real job: :func:`extract`, its result as plain data."""
    extraction = extract(
        data,
        s3_key=request.s3_key,
        content_type=request.content_type,
        max_pdf_pages=request.max_pdf_pages,
        max_text_chars=request.max_text_chars,
        max_table_rows=request.max_table_rows,
    )
    return extraction.model_dump(mode="json")


def serve(channel: socket.socket, config: WorkerConfig) -> None:
    """The worker's life: announce itself, then answer jobs until the pool
    closes the channel. Runs in the child process."""
    # The pool decides when a worker stops; a Ctrl-C meant for the terminal's
    # foreground process must not kill it half-way through a reply.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _release_forkserver()
    _die_with_parent(os.getppid())
    _limit_address_space(config.memory_bytes)
    configure_logging(config.service_name, config.log_level)

    with channel, channel.makefile("rb") as incoming:
        frames.send(channel, {"ready": os.getpid()})
        while True:
            try:
                header, data = frames.receive(incoming)
            except EOFError:
                return
            reply = _answer(config.job, header, data)
            try:
                _reply(channel, reply)
            except ConnectionError:
                return  # the pool gave up on this worker while it worked
            if reply["outcome"] == "out_of_memory":
                # What a MemoryError left half-built is not worth trusting.
                return


def _reply(channel: socket.socket, reply: dict[str, Any]) -> None:
    try:
        frames.send(channel, reply)
    except MemoryError:
        # Encoding a large result can be the last straw; nothing was sent.
        reply.clear()
        reply["outcome"] = "out_of_memory"
        frames.send(channel, reply)


def _answer(job: Job, header: dict[str, Any], data: bytes) -> dict[str, Any]:
    try:
        return {"outcome": "extracted", "extraction": job(data, _request(header))}
    except DocumentRejected as rejected:
        return {
            "outcome": "rejected",
            "reason": rejected.reason,
            "message": rejected.message,
        }
    except MemoryError:
        return {"outcome": "out_of_memory"}
    except Exception as exc:
        return {
            "outcome": "failed",
            "error": type(exc).__name__,
            "traceback": traceback.format_exc(),
        }


def _request(header: dict[str, Any]) -> ExtractionRequest:
    return ExtractionRequest(
        s3_key=str(header["s3_key"]),
        content_type=header.get("content_type"),
        max_pdf_pages=int(header["max_pdf_pages"]),
        max_text_chars=int(header["max_text_chars"]),
        max_table_rows=int(header["max_table_rows"]),
    )


def _limit_address_space(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _release_forkserver() -> None:
    """Close this process's copy of the forkserver's "alive" pipe.

    multiprocessing hands every forkserver child the write end of the pipe
    whose closing tells the forkserver that its client, the extractor, is
    gone. A worker has no use for it, and holding it would keep the
    forkserver running after the extractor died, and so this worker too,
    whose parent-death signal waits for the forkserver to end.
    """
    server = forkserver._forkserver
    alive = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(alive, int):
        os.close(alive)
        setattr(server, "_forkserver_alive_fd", None)  # noqa: B010


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies, even mid-document."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # The parent may have died before the request took effect.
    if os.getppid() != parent:
        os._exit(1)
