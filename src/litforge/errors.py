"""The exception for mistakes a user can fix; the entry points print it without a traceback."""


class UserError(Exception):
    """A mistake in a config, a data file or a checkpoint; the message says what to change."""
