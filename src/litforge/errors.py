"""The exceptions for mistakes a user can fix, and how the entry points end on them."""

import os
import sys


class UserError(Exception):
    """A mistake in a config, a data file or a checkpoint; the message says what to change."""


class Diverged(UserError):
    """The training loss became NaN or infinite; metrics.json records `stopped_by: divergence`."""


class Interrupted(SystemExit):
    """Ends a run or a sweep that a signal stopped; its exit code is 128 + the signal number, as a
    shell's."""


def exit_on_error(check, *args) -> None:
    """Run `check(*args)`; a UserError ends the process with its message and exit code 2, no
    traceback (HYDRA_FULL_ERROR=1 shows one, as it does for Hydra's own errors)."""
    try:
        check(*args)
    except UserError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"litforge: error: {err}", file=sys.stderr)
        sys.exit(2)
