"""The one exception type for problems a user can fix.

The UI shows its message with gr.Error, the REST API returns it as HTTP 4xx; anything else
that escapes is a bug in our code.
"""


class UserError(ValueError):
    """A request or file the user sent cannot be used; the message says what to change."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field
