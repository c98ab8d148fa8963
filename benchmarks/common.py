"""Shared helpers of the benchmark scripts: machine description, versions, one measurement per subprocess.

A measurement runs as `python benchmarks/<worker>.py ... --json` in a fresh process (clean memory high-water mark,
thread pools and oneDNN primitive cache); the worker prints one line `RESULT {json}` last, which `run_worker`
returns as a dict (with the command, the wall time and the exit status). Environment changes (e.g.
`TF_ENABLE_ONEDNN_OPTS`) go to the child only.
"""

import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT_PREFIX = "RESULT "


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags(wanted=("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "amx_int8")):
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [flag for flag in wanted if flag in flags]
    except OSError:
        pass
    return []


def memory_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def machine():
    load = os.getloadavg()
    return {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "nproc": os.cpu_count(),
            "cores_allowed": len(os.sched_getaffinity(0)), "memory_gib": memory_gib(),
            "load_average": [round(v, 2) for v in load], "platform": platform.platform(),
            "hypervisor": "hypervisor" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None}


def versions(extra=("onnxruntime", "tf2onnx", "jax")):
    import importlib

    found = {"python": platform.python_version()}
    for module in ("hqdepth", "tensorflow", "keras", "numpy", *extra):
        try:
            found[module] = importlib.import_module(module).__version__
        except ImportError:
            found[module] = None
    return found


def now():
    return datetime.datetime.now().isoformat(timespec="seconds")


def _status_mb(field):
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb():
    """This process's resident-set high-water mark in MB (VmHWM since the last `reset_peak_rss`, else ru_maxrss)."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss():
    """Restart the high-water mark from the current RSS (Linux: `echo 5 > /proc/self/clear_refs`); False if not
    possible (then peaks cover the whole process)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def current_rss_mb():
    return _status_mb("VmRSS")


def emit(result):
    """Print the worker's result as the last line for `run_worker`."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(script, args, env=None, timeout=None, echo=True, label=None, keep_stdout=False):
    """Run `benchmarks/<script>` with `args` in a subprocess; returns its RESULT dict (or an error dict).

    keep_stdout: also return the child's standard output as "stdout" (for scripts that print, not emit)."""
    command = [sys.executable, str(HERE / script), *map(str, args)]
    child_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), **(env or {})}
    shown = " ".join(f"{k}={v}" for k, v in (env or {}).items())
    shown = (shown + " " if shown else "") + shlex.join(["python", f"benchmarks/{script}", *map(str, args)])
    if echo:
        print(f"  $ {shown}", flush=True)
    start = time.perf_counter()
    try:
        process = subprocess.run(command, env=child_env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "command": shown, "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    result = None
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
            break
    if result is None and keep_stdout and process.returncode == 0:
        result = {}
    if result is None or process.returncode != 0:
        tail = "\n".join((process.stdout + process.stderr).strip().splitlines()[-15:])
        result = {"error": f"exit status {process.returncode}: {tail}", **(result or {})}
        if echo:
            print(f"    FAILED ({label or script}): {tail}", flush=True)
    result.update(command=shown, wall_s=round(wall, 1))
    if keep_stdout:
        result["stdout"] = process.stdout
    return result
