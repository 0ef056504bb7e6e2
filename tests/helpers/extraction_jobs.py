"""A job for the extraction pool's tests, run inside a worker: the document's
bytes say how to misbehave (``b"crash"``), or how to cooperate with the test
(``b"rendezvous <dir> <count>"``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from services.extractor.worker import ExtractionRequest
from shared.errors import DocumentRejected

# Long enough never to finish inside a test, short enough that a worker the
# pool failed to kill cannot linger for long.
_HANG_SECONDS = 120.0
_RENDEZVOUS_SECONDS = 10.0


def misbehave(data: bytes, request: ExtractionRequest) -> dict[str, Any]:
    """Do what the document says, then answer with this worker's pid."""
    command, *args = data.decode().split()
    if command == "hang":
        # "hang <file>": say so through the file, then never finish.
        Path(args[0]).write_text(str(os.getpid()))
        time.sleep(_HANG_SECONDS)
    elif command == "allocate":
        # "allocate <MiB>": more than the worker's address space allows.
        grabbed = bytearray(int(args[0]) * 1024 * 1024)
        return {"pid": os.getpid(), "allocated": len(grabbed)}
    elif command == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif command == "reject":
        raise DocumentRejected("empty_document", "The document is empty (0 bytes)")
    elif command == "bug":
        raise ValueError("a bug in the extraction code")
    elif command == "rendezvous":
        # "rendezvous <dir> <count>": wait until <count> workers are here.
        _meet(Path(args[0]), int(args[1]))
    return {"pid": os.getpid(), "s3_key": request.s3_key}


def _meet(folder: Path, count: int) -> None:
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + _RENDEZVOUS_SECONDS
    while len(list(folder.iterdir())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} jobs ran at once")
        time.sleep(0.01)
