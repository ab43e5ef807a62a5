"""The one exception type for mistakes a user can make (bad path, bad flag value, bad checkpoint).

The CLI turns a ``DLMError`` into one readable line and exit status 2; library callers can catch it;
the server answers it with a 400 whose ``param`` is the error's ``param`` (the setting at fault,
when one is).
"""


class DLMError(Exception):
    """A user-facing error: the message says what went wrong and what to do. ``param``: the
    setting at fault (a ``SampleConfig`` field, a request field), when there is one."""

    def __init__(self, message: str = "", param: str | None = None):
        super().__init__(message)
        self.param = param
