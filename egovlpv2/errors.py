"""The one base class of errors that are the user's to fix (a missing path, a bad key, a malformed file).

Command-line entry points print these as a single ``error: ...`` line and exit with status 2; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: reported as one line, never as a traceback."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or directory named by the user (a recipe, the command line) does not exist."""


class UsageError(UserError, ValueError):
    """A command-line value that cannot work (a cluster shape, a combination of options)."""
