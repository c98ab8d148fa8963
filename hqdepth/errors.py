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
    one value is "hqdepth: <the message>". Both become the `HQDepthError` they describe, so that the CLI prints one
    line and `hqdepth.train` raises what reading the sample directly would. Any other error (a bug, not bad input,
    also one raised while handling a DataError) gives None."""
    import re
    import sys

    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(error, tf.errors.OpError):
        return None
    message = str(getattr(error, "message", error)).split("\n\n\t [[", 1)[0]  # without TensorFlow's node suffix
    # The Python traceback TensorFlow embeds ends with the exception raised: an hqdepth error, or (raised while
    # handling one, "During handling ...") something else, which is a bug to show in full.
    found = list(re.finditer(r"^hqdepth\.errors\.(\w+): ", message, re.MULTILINE))
    if found:
        rest = message[found[-1].end():]
        if re.search(r"^(Traceback \(most recent call last\)|During handling|The above exception)", rest, re.MULTILINE):
            return None
        kind = {"ConfigError": ConfigError, "DataError": DataError}.get(found[-1].group(1), HQDepthError)
        return kind(rest.strip())
    assertion = re.search(r"assertion failed: \[hqdepth: (.*)\]\s*$", message, re.MULTILINE)
    if assertion:  # a tf.debugging.Assert whose one value is "hqdepth: <the message>"
        return DataError(assertion.group(1))
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
