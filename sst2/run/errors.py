"""The one exception type a user is meant to read."""


class UserError(Exception):
    """An error the user can fix: entry points print its message, not a traceback.

    Raise it with a message that says what went wrong and what to do about it.
    """
