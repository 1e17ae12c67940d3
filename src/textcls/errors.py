"""The one error type for mistakes a user can make (bad path, column, config value, label...).

The CLI prints its message without a traceback and exits with status 2; anything else that escapes is a bug.
"""


class TextclsError(Exception):
    """A user-caused error. The message says what was wrong and what to do about it."""

    exit_code = 2


class Interrupted(TextclsError):
    """Ctrl-C (SIGINT) during work that can be resumed: the message says where it stopped and how to go on."""

    exit_code = 130
