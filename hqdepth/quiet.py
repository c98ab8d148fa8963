"""Quiet TensorFlow for the `hqdepth` command: no C++ log lines unless the user asks (`--verbose`).

TensorFlow 2.21 logs through absl. Loading its shared libraries prints, before any Python code can
set a level and whatever `TF_CPP_MIN_LOG_LEVEL` says (measured: 0, 2 and 3 all print them), once
per library that links its own copy of absl (twice on a CPU wheel):

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. You may see slightly different ...
    I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.

(GPU wheels add `Unable to register cuDNN/cuFFT/cuBLAS factory` lines the same way). These are
written by C++ straight to file descriptor 2, so Python's `sys.stderr`, `warnings` or `logging`
cannot catch them. Two measures, applied only by the command line (importing `hqdepth` as a library
changes nothing):

1. `TF_CPP_MIN_LOG_LEVEL=3` before TensorFlow loads: everything TensorFlow logs once running
   (`cuInit` failures, device creation, `cpu_feature_guard` advice, ...) is dropped; absl's
   Python logger (used by Keras and TensorFlow's saving code) is set to errors only.
2. The first `import tensorflow` - wherever it happens, so commands that never need TensorFlow
   never load it - runs with file descriptor 2 pointed at a temporary file; afterwards the
   descriptor is restored and every captured line that is not a C++ log line below FATAL (or the
   banner and continuation lines above) is written back to stderr, in order. Python warnings and
   errors raised during the import therefore still reach the user.
"""

import contextlib
import importlib.abc
import os
import re
import sys
import tempfile

# Lines that TensorFlow's shared libraries print while loading: absl's banner, absl-format log lines
# of severity INFO, WARNING or ERROR ("I0000 00:00:1795980459.709239    5900 port.cc:153] ..."),
# and the second line of cpu_feature_guard's message.
NOISE = re.compile(
    r"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)\s*$")


def is_noise(line):
    """Whether `line` (one line of stderr, newline optional) is TensorFlow's load-time C++ logging."""
    return bool(NOISE.match(line))


@contextlib.contextmanager
def filtered_stderr_fd(keep=lambda line: not is_noise(line)):
    """Capture file descriptor 2 (C/C++ writes included) for the block, then replay the lines `keep` accepts.

    A temporary file, not a pipe, holds the output, so a chatty block cannot fill a pipe buffer and
    block. When descriptor 2 cannot be duplicated (no stderr at all), the block runs unchanged.
    """
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = "".join(line for line in text.splitlines(keepends=True) if keep(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


class _QuietLoader:
    """Wraps TensorFlow's loader: runs the package's `__init__` inside `filtered_stderr_fd`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        try:
            with filtered_stderr_fd():
                self._loader.exec_module(module)
        finally:  # nothing downstream should ever see this wrapper
            module.__loader__ = self._loader
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._loader
            silence_absl_python_logging()  # TensorFlow has just loaded absl

    def __getattr__(self, name):  # get_resource_reader, is_package, ... as the real loader
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """A one-shot `sys.meta_path` entry: finds `tensorflow` with the other finders, wraps its loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # one import only; also keeps the finders below from recursing here
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


def quiet_tensorflow():
    """Apply both measures (see the module docstring), and OpenCV's warnings off. Idempotent; after TensorFlow
    has loaded only the log level of later messages and the absl logger change."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # OpenCV's own warnings ("[ WARN:0@...] ... PNG input buffer is incomplete" for a truncated file): the reader
    # reports the file as a DataError; read when OpenCV loads, so set before any command imports cv2
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
    silence_absl_python_logging()


def silence_absl_python_logging():
    """absl's Python logger to errors only, if absl is loaded (the quiet import calls it again once
    TensorFlow has loaded absl; creating the "absl" logger before absl does would break its logger class)."""
    if "absl.logging" in sys.modules:
        sys.modules["absl.logging"].set_verbosity("error")
