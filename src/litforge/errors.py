"""The exceptions for mistakes a user can fix; the entry points print them without a traceback."""


class UserError(Exception):
    """A mistake in a config, a data file or a checkpoint; the message says what to change."""


class Diverged(UserError):
    """The training loss became NaN or infinite; metrics.json records `stopped_by: divergence`."""
