"""How a backend process ended, in words a user can act on."""

from __future__ import annotations

import signal

SIGILL_TEXT = "the backend's native code uses CPU instructions this machine cannot run (SIGILL)"
DEFAULT_SIGILL_HINT = "rebuild or reinstall the backend for this CPU"
# a shell (run.sh) whose last command died of a signal exits with 128 + the signal's number
SHELL_SIGNAL_BASE = 128


def describe_exit_code(code: int | None, sigill_hint: str = "") -> str:
    """``code`` as asyncio/subprocess reports it (negative: killed by that signal).

    SIGILL, directly or as a shell's exit code 132, names the cause and the plugin's hint
    for rebuilding, rather than only "killed by signal 4".
    """
    if code is None:
        return "still running"
    if code == -signal.SIGILL or code == SHELL_SIGNAL_BASE + signal.SIGILL:
        how = f"killed by signal {int(signal.SIGILL)}" if code < 0 else f"exit code {code}"
        return f"{how}: {SIGILL_TEXT} — {sigill_hint or DEFAULT_SIGILL_HINT}"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"
