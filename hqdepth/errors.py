"""Errors a user can cause. The CLI prints them without a traceback and exits non-zero."""

import contextlib


class HQDepthError(Exception):
    """Base class for user-facing errors (bad file, bad value, unknown name)."""


class ConfigError(HQDepthError, ValueError):
    """A configuration value, option or name is invalid."""


class DataError(HQDepthError):
    """A data file is missing, unreadable or inconsistent (the message names file and line)."""


def error_from_tensorflow(error):
    """The user-facing error inside a TensorFlow error raised while reading data, or None.

    A `DataError` raised in a `tf.data` map (`hqdepth.data.load` reads samples in `tf.numpy_function`) reaches the
    caller as a `tf.errors.OpError` (usually `UnknownError`) whose message holds the original
    `hqdepth.errors.DataError: ...` line; a bad TFRecord shard as an `InvalidArgumentError` from an assertion whose
    first value starts with "hqdepth:" and whose second names the file. Both become the `HQDepthError` they
    describe, so that the CLI prints one line and `hqdepth.train` raises what `open_source` would. Any other error
    (a bug, not bad input) gives None."""
    import re
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    message = str(getattr(error, "message", error))
    found = re.findall(r"hqdepth\.errors\.(\w+): (.+)", message)
    if found:
        name, text = found[-1]
        kind = {"ConfigError": ConfigError, "DataError": DataError}.get(name, HQDepthError)
        return kind(text.strip())
    assertion = re.search(r"assertion failed: \[hqdepth: ([^\]]*)\]((?: \[[^\]]*\])*)", message)
    if assertion:  # tf.debugging.Assert's values: "hqdepth: WHAT", the file, then the rest
        where, *rest = re.findall(r"\[([^\]]*)\]", assertion.group(2)) or [""]
        return DataError(f"{assertion.group(1)} {where}: {' '.join(rest)}".rstrip(": "))
    return None


@contextlib.contextmanager
def errors_from_tensorflow():
    """Context manager and decorator: re-raise a TensorFlow error that carries a user-facing error
    (`error_from_tensorflow`) as that error; anything else passes unchanged."""
    try:
        yield
    except Exception as error:
        converted = error_from_tensorflow(error)
        if converted is None:
            raise
        raise converted from error
