"""The one exception family the entry point turns into a one-line message and an exit code."""


class TrainerError(Exception):
    """A problem the user can fix: the message names the file or setting and says what to do."""

    exit_code = 2


class Interrupted(TrainerError):
    """Ctrl-C or SIGTERM: exit code 128 + the signal number; the message says how to resume."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
