"""The one exception type for mistakes a user can make (bad path, bad flag value, bad checkpoint).

The CLI turns a ``DLMError`` into one readable line and exit status 2; library callers can catch it.
"""


class DLMError(Exception):
    """A user-facing error: the message says what went wrong and what to do."""
