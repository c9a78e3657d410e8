"""One error type with an exit code; subclasses are named for the user's problem.

The CLI catches `AsgiprofError` once and prints its message as one line: messages
therefore say what went wrong *and* how to fix it.
"""

from __future__ import annotations


class AsgiprofError(Exception):
    """A failure the user can act on. `exit_code` follows DESIGN.md: 2 bad input, 1 other."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(AsgiprofError):
    """Bad command line or input."""

    exit_code = 2


class TargetNotFoundError(UsageError):
    """No process with that PID."""


class NotPythonError(UsageError):
    """The PID exists but is not a Python process py-spy can read."""


class NotAsgiServerError(UsageError):
    """A Python process, but no ASGI server event loop was found in it."""


class PtraceDeniedError(UsageError):
    """The kernel refused to let py-spy read the target's memory."""


class TargetExitedError(UsageError):
    """The launched server exited before it started serving."""


class AppImportError(UsageError):
    """The app spec from the server command line could not be imported."""


class OutputDirError(UsageError):
    """The output directory cannot be used."""


class CorruptProfileError(UsageError):
    """A saved profile directory is missing files or holds unreadable data."""


class SamplerError(AsgiprofError):
    """py-spy crashed or produced nothing usable."""


class PyspyMissingError(UsageError, SamplerError):
    """py-spy cannot be found, or the one found does not run (exit code 2: the fix is an
    install, not a retry)."""


PTRACE_HELP = (
    "py-spy needs permission to read the target's memory: run asgiprof as root or the "
    "target's user with CAP_SYS_PTRACE (sudo asgiprof ...), set "
    "`sysctl kernel.yama.ptrace_scope=0`, or start containers with --cap-add SYS_PTRACE"
)


class StartupInterrupted(AsgiprofError):
    """Ctrl-C before anything was measured: nothing to analyse, nothing written (exit 1:
    not a success, not bad input)."""
