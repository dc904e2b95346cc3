"""The errors that mean "bad input", not "bug".

Every command ends a :class:`UserError` with one message naming the culprit (file and line,
utterance id, config key and its allowed values) and exit status 1, without a traceback
(``--verbose`` shows one). Anything else that escapes a command is a bug and keeps its
traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or settings; the message says what and where."""


class DataError(UserError, ValueError):
    """Bad input data; the message names the file, line and culprit."""


class ConfigError(UserError, ValueError):
    """Invalid configuration; the message names the file and the key."""
