"""A backend whose native code cannot run on this CPU (SIGILL) fails with an error that says so."""

from __future__ import annotations

import signal

from localai.backends.exits import SIGILL_TEXT, describe_exit_code
from tests.kernel_helpers import assert_error_shape, chat, echo_env, write_model

DEFAULT_HINT = "rebuild or reinstall the backend for this CPU"


def test_exit_codes_in_words():
    assert describe_exit_code(3) == "exit code 3"
    assert describe_exit_code(-signal.SIGKILL) == "killed by signal 9"
    assert describe_exit_code(-signal.SIGILL, "rebuild foo") == f"killed by signal 4: {SIGILL_TEXT} — rebuild foo"
    # run.sh without exec: the shell reports its child's SIGILL as exit code 128 + 4
    assert describe_exit_code(132) == f"exit code 132: {SIGILL_TEXT} — {DEFAULT_HINT}"


def test_sigill_during_a_request_names_the_cause_and_the_fix(localai_server, echo_backend, tmp_path):
    """The AMX case: the backend loads and answers a one-token prompt, then dies of SIGILL."""
    models = tmp_path / "models"
    write_model(models, "echo")
    server = localai_server(models, env=echo_env(echo_backend))
    assert chat(server, "echo", "hi").status_code == 200
    error = assert_error_shape(chat(server, "echo", "a longer prompt SIGILL_NOW"), (500, 502, 503))
    assert "killed by signal 4" in error["message"], error
    assert f"{SIGILL_TEXT} — {DEFAULT_HINT}" in error["message"], error
    assert chat(server, "echo", "after").status_code == 200  # the next request starts it again


def test_sigill_under_a_shell_run_sh(localai_server, tmp_path):
    """A gallery-style run.sh that does not exec: the shell exits 132, still reported as SIGILL."""
    run_sh = tmp_path / "backend" / "run.sh"
    run_sh.parent.mkdir()
    run_sh.write_text('#!/bin/sh\nsh -c \'kill -ILL $$\'\nexit $?\n')
    run_sh.chmod(0o755)
    models = tmp_path / "models"
    write_model(models, "native", backend="native")
    server = localai_server(models, env=echo_env(run_sh, name="native"))
    error = assert_error_shape(chat(server, "native", "hello there"), (500, 502, 503))
    assert f"exit code 132: {SIGILL_TEXT}" in error["message"], error
