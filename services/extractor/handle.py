"""The pool's side of one extraction worker: starting the process, talking
to it over its channel, telling whether it lives, and stopping it."""

from __future__ import annotations

import asyncio
import logging
import select
import signal
import socket
import sys
import time
import types
from dataclasses import asdict
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any, Final

from services.extractor import frames, worker
from services.extractor.worker import ExtractionRequest, WorkerConfig
from shared.logging import log_event

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS: Final = 15.0
STOP_GRACE_SECONDS: Final = 2.0
# A result is bounded by the text and row limits; anything near this is not
# a result but a worker gone wrong.
MAX_REPLY_BYTES: Final = 256 * 1024 * 1024


class WorkerStartFailed(RuntimeError):
    """A worker process did not come up (the extractor cannot serve)."""


class WorkerGone(Exception):
    """The worker's channel ended or carried garbage in the middle of a job."""


class WorkerHandle:
    """One worker process and the pool's end of its channel."""

    def __init__(
        self,
        process: BaseProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.process = process
        self.pid = process.pid
        self.busy = False
        self._reader = reader
        self._writer = writer

    def alive(self) -> bool:
        """Whether the process runs (an idle one: as the kernel sees it)."""
        if self.busy:
            return self.process.is_alive() and not self._reader.at_eof()
        return self.ready()

    def ready(self) -> bool:
        """For an idle worker: alive, with nothing waiting on its channel.

        An idle worker sends nothing, so anything there is its end closing:
        the kernel knows at once that a killed worker is gone, before the
        event loop or the forkserver have noticed.
        """
        if self._writer.is_closing() or self._reader.at_eof():
            return False
        if not self.process.is_alive():
            return False
        waiting, _, _ = select.select(
            [self._writer.get_extra_info("socket")], [], [], 0
        )
        return not waiting

    async def hello(self) -> None:
        greeting = await frames.read(self._reader, max_bytes=1024)
        if greeting.get("ready") != self.pid:
            raise frames.FrameError(f"unexpected greeting {greeting!r}")

    async def run(self, request: ExtractionRequest, data: bytes) -> dict[str, Any]:
        try:
            self._writer.writelines(frames.pack(asdict(request), data))
            await self._writer.drain()
            return await frames.read(self._reader, max_bytes=MAX_REPLY_BYTES)
        except (asyncio.IncompleteReadError, ConnectionError, frames.FrameError) as exc:
            raise WorkerGone() from exc

    def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        self._writer.close()
        if sig == signal.SIGKILL:
            self.process.kill()
        else:
            self.process.terminate()

    async def exit_code(self) -> int | None:
        """The exit code once the process has ended (negative: the signal)."""
        await asyncio.to_thread(self.process.join, STOP_GRACE_SECONDS)
        return self.process.exitcode


async def start_worker(
    context: ForkServerContext, config: WorkerConfig
) -> WorkerHandle:
    """A new worker, once it has said it is ready."""
    began = time.perf_counter()
    ours, theirs = socket.socketpair()
    process = context.Process(
        target=worker.serve,
        args=(theirs, config),
        name="extraction-worker",
        daemon=True,
    )
    try:
        await _launch(process)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
    except BaseException as exc:
        ours.close()
        _kill_if_started(process)
        if isinstance(exc, OSError):
            raise WorkerStartFailed(f"could not start a worker: {exc}") from exc
        raise
    finally:
        theirs.close()

    started = WorkerHandle(process, reader, writer)
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            await started.hello()
    except (TimeoutError, asyncio.IncompleteReadError, frames.FrameError) as exc:
        started.stop(signal.SIGKILL)
        code = await started.exit_code()
        raise WorkerStartFailed(
            f"worker {started.pid} did not start ({describe_exit(code)}); "
            "is MESH_EXTRACT_MEMORY_MIB too small?"
        ) from exc
    except BaseException:
        started.stop(signal.SIGKILL)
        raise

    log_event(
        logger,
        "extraction.worker_started",
        pid=started.pid,
        start_ms=round((time.perf_counter() - began) * 1000, 1),
    )
    return started


def main_script_imports() -> list[str]:
    """The modules the program's main script imported, when it is a script.

    Each worker runs such a script again as ``__mp_main__`` (Python 3.11's
    forkserver does not preload it, even when asked to). With what it
    imports already in the forkserver, that is quick: for the ``a2a-mesh``
    command, a worker then starts in about 10 ms instead of 200.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return []  # run with -m: workers leave such a module alone
    names: set[str] = set()
    for value in vars(main).values():
        if isinstance(value, types.ModuleType):
            names.add(value.__name__)
        elif isinstance(getattr(value, "__module__", None), str):
            names.add(value.__module__)
    return sorted(name for name in names if name in sys.modules and name != "__main__")


async def _launch(process: BaseProcess) -> None:
    """``process.start()`` off the event loop (the first one also starts the
    forkserver, and waits for it to import the extraction modules)."""
    launching = asyncio.ensure_future(asyncio.to_thread(process.start))
    try:
        await asyncio.shield(launching)
    except asyncio.CancelledError:
        # The thread carries on regardless, with the worker's end of the
        # channel: let it finish before the caller closes that and kills
        # what it started.
        await asyncio.wait([launching])
        if launching.exception() is None:
            _kill_if_started(process)
        raise


def _kill_if_started(process: BaseProcess) -> None:
    if process.pid is not None:
        process.kill()


def join_or_kill(processes: list[BaseProcess]) -> None:
    """Wait a little for ``processes`` to end (blocking), then kill the rest."""
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.exitcode is None:
            process.kill()
            process.join(STOP_GRACE_SECONDS)


def signal_name(code: int | None) -> str | None:
    """The signal that ended a process, from its exit code, if one did."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return None


def describe_exit(code: int | None) -> str:
    """How a worker ended, in words for a person."""
    if code is None:
        return "it sent no usable reply"
    name = signal_name(code)
    if name:
        return f"killed by {name}"
    return f"exit code {code}"
