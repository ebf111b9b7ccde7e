"""Running the configured fixer command: the brief on stdin, a diff on stdout.

The fixer is any program (a script around a coding model, a linter with
``--fix``, a person's tool): errmesh gives it the fix brief and expects a
unified diff back. It runs without the GitHub token in its environment (a
fixer never needs it, and the token never leaves the leader), with a time
limit, and its failure is an ordinary outcome: the caller comments on the
issue and leaves the branch as it was.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from github_sink.errors import FixerError

__all__ = ["TOKEN_VARIABLES", "run_fixer"]

#: Removed from the fixer's environment.
TOKEN_VARIABLES = ("ERRMESH_GITHUB_TOKEN", "GITHUB_TOKEN", "GH_TOKEN", "GH_ENTERPRISE_TOKEN")


def run_fixer(
    command: Sequence[str],
    brief: str,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> str:
    """The fixer's stdout (the diff); raises ``FixerError`` on failure or timeout."""
    if not command:
        raise FixerError("no fixer command configured (ERRMESH_FIXER)")
    child_env = {
        k: v for k, v in (os.environ if env is None else env).items() if k not in TOKEN_VARIABLES
    }
    try:
        done = subprocess.run(
            list(command),
            input=brief,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FixerError(f"the fixer did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise FixerError(f"cannot run the fixer {command[0]!r}: {exc.strerror}") from None
    if done.returncode != 0:
        raise FixerError(f"the fixer exited with status {done.returncode}")
    if not done.stdout.strip():
        raise FixerError("the fixer printed no diff")
    return done.stdout
