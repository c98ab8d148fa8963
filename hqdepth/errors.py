"""Errors a user can cause. The CLI prints them without a traceback and exits non-zero."""


class HQDepthError(Exception):
    """Base class for user-facing errors (bad file, bad value, unknown name)."""


class ConfigError(HQDepthError, ValueError):
    """A configuration value, option or name is invalid."""


class DataError(HQDepthError):
    """A data file is missing, unreadable or inconsistent (the message names file and line)."""
