"""Child processes of the launcher: started, stopped, and gone with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from services.launcher.errors import StartupFailed
from services.launcher.processes import ManagedProcess


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_stop_ends_the_process_with_sigterm(tmp_path: Path) -> None:
    sleeper = ManagedProcess(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env=dict(os.environ),
        log_dir=tmp_path,
    )
    sleeper.start()
    pid = sleeper.pid
    assert pid is not None and sleeper.running()

    sleeper.stop(timeout=5)

    assert not sleeper.running()
    assert _gone_within(pid, 1)


def test_health_wait_fails_fast_with_the_log_when_the_process_dies(
    tmp_path: Path,
) -> None:
    crasher = ManagedProcess(
        "crasher",
        [sys.executable, "-c", "print('bad settings: MESH_ISSUER missing'); exit(3)"],
        env=dict(os.environ),
        log_dir=tmp_path,
    )
    crasher.start()

    started = time.monotonic()
    with pytest.raises(StartupFailed) as failed:
        crasher.wait_healthy("https://127.0.0.1:9/health", ca_file=None, timeout=30)

    assert time.monotonic() - started < 10
    assert failed.value.component == "crasher"
    assert "MESH_ISSUER missing" in failed.value.log_tail


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux's")
def test_child_ends_when_its_launcher_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    launcher = textwrap.dedent(
        f"""
        import os, sys, time
        from pathlib import Path
        from services.launcher.processes import ManagedProcess
        child = ManagedProcess(
            "child", [sys.executable, "-c", "import time; time.sleep(60)"],
            env=dict(os.environ), log_dir=Path({str(tmp_path)!r}),
        )
        child.start()
        Path({str(pid_file)!r}).write_text(str(child.pid))
        time.sleep(60)
        """
    )
    with subprocess.Popen([sys.executable, "-c", launcher]) as parent:
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child_pid = int(pid_file.read_text())

        parent.send_signal(signal.SIGKILL)
        parent.wait(5)

    assert _gone_within(child_pid, 5)


def test_child_started_from_a_passing_thread_outlives_the_thread(
    tmp_path: Path,
) -> None:
    sleeper = ManagedProcess(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env=dict(os.environ),
        log_dir=tmp_path,
    )
    starter = threading.Thread(target=sleeper.start)
    starter.start()
    starter.join()
    try:
        time.sleep(1)
        assert sleeper.running()
    finally:
        sleeper.stop(timeout=5)
