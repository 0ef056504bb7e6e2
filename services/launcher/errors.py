"""Why the local launcher could not start something.

LauncherError
├── PrerequisiteMissing   a program the launcher needs is not installed
└── StartupFailed         a process did not come up; carries its log tail
"""

from __future__ import annotations


class LauncherError(Exception):
    """Base of the launcher's errors; the message is meant for a person."""


class PrerequisiteMissing(LauncherError):
    """A program the launcher needs is not installed or not found."""

    def __init__(self, message: str, *, what: str = "") -> None:
        self.what = what
        super().__init__(message)


class StartupFailed(LauncherError):
    """A process did not start; ``log_tail`` holds the end of its log."""

    def __init__(self, component: str, reason: str, log_tail: str = "") -> None:
        self.component = component
        self.reason = reason
        self.log_tail = log_tail
        message = f"{component} did not start: {reason}"
        if log_tail:
            message += f"\n--- last lines of its log ---\n{log_tail}"
        super().__init__(message)
