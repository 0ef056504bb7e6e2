"""Child processes of the local mesh: started in their own session, logged to a
file, waited for until healthy, and always stopped (TERM, then KILL)."""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

import httpx

from services.launcher.errors import StartupFailed
from shared.tls import client_context

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class ManagedProcess:
    """One child process with its log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._argv = list(argv)
        self._env = dict(env)
        self._process: subprocess.Popen[bytes] | None = None

    def update_env(self, env: Mapping[str, str]) -> None:
        """Change the environment of the next start."""
        self._env.update(env)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # A session of its own: Ctrl-C in the terminal reaches the launcher,
            # which then stops every child in order.
            self._process = _spawn(
                lambda: subprocess.Popen(  # noqa: S603
                    self._argv,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def exit_code(self) -> int | None:
        """How the last start ended; None while it runs or before it starts."""
        return None if self._process is None else self._process.poll()

    def wait_healthy(
        self,
        url: str,
        *,
        ca_file: Path | None,
        timeout: float,
        certificate: tuple[Path, Path] | None = None,
    ) -> None:
        """Poll ``url`` until it answers 200; fail fast if the process dies.

        ``certificate`` is presented to a server that asks for one (mutual TLS).
        """
        deadline = time.monotonic() + timeout
        verify = client_context(ca_file, certificate=certificate)
        with httpx.Client(verify=verify, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.running():
                    raise StartupFailed(self.name, "it exited", self.log_tail())
                try:
                    if client.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise StartupFailed(self.name, f"no answer from {url}", self.log_tail())

    def stop(self, timeout: float = 30.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


_spawn_requests: queue.SimpleQueue[
    tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
] = queue.SimpleQueue()
_spawner_lock = threading.Lock()
_spawner: threading.Thread | None = None


def _spawn(start: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run ``start`` on one thread that lives as long as the launcher.

    Linux sends the parent-death signal when the *thread* that forked a child
    ends; children forked from a short-lived worker thread would be stopped
    with it.
    """
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = threading.Thread(
                target=_serve_spawns, name="spawner", daemon=True
            )
            _spawner.start()

    done: Future[subprocess.Popen[bytes]] = Future()
    _spawn_requests.put((start, done))
    return done.result()


def _serve_spawns() -> None:
    while True:
        start, done = _spawn_requests.get()
        try:
            done.set_result(start())
        except BaseException as exc:
            done.set_exception(exc)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the launcher dies, even by SIGKILL."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def python_module(module: str, *args: str) -> list[str]:
    """The command that runs ``module`` with this interpreter."""
    return [sys.executable, "-m", module, *args]
