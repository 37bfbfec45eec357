"""The one exception family the entry point turns into a one-line message and an exit code."""


class TrainerError(Exception):
    """A problem the user can fix: the message names the file or setting and says what to do."""

    exit_code = 2
