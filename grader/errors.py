"""The one error the grader reports as a message, not a traceback."""


class UsageError(Exception):
    """Bad input from the person running the command: printed without a traceback, with
    what to do."""
