"""Kill tests without paying TensorFlow's start-up for every restart: a fork server and its client.

`python tests/kill_helpers.py MODE ARGS_JSON` imports TensorFlow and Keras once, runs no op (a
process that has started TensorFlow's thread pools cannot fork safely), and then forks one worker
per `start [JSON]` line it reads on stdin (the JSON updates the worker's args). A worker runs `WORKERS[MODE](args, report)`; `report` writes
one line to the server's stdout with a single `os.write` (lines from the server and its workers
never interleave). The server prints `pid N` for each worker and `exit N STATUS` when it ends, so a
test synchronises on what the worker says it has done, never on sleeps.

`ForkServer` is the test's side: `start()` -> pid, `expect(prefix)` -> the next line (with a
deadline; on a timeout the server and its worker are killed and the test fails with the server's
stderr), `kill(pid)` (SIGKILL) and `close()`.

Workers:
- `cycles`: a small compiled model with a crash-safe `RunBackup`. On start it restores the backup
  and checks that every model and optimizer variable holds the value of one backed-up cycle
  (`resumed K ok` or `resumed K BAD ...`), then runs cycles K+1 .. `cycles`: set every variable to
  the values of that cycle, `begin K`, save the backup, `saved K`; `done` at the end.
- `train`: `hqdepth.training.trainer.train` of `args["config"]` on `args["data"]` into
  `args["out"]`; each backup save is bracketed by `begin K` / `saved K`; `finished STATUS` at the end.
"""

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


def _report(text):
    os.write(1, (text.rstrip("\n") + "\n").encode())


def _pattern(step, index, shape):
    """The value every variable `index` holds after cycle `step` of the `cycles` worker."""
    import numpy as np

    return np.full(shape, step + index / 1024.0, np.float32)


def _cycles_variables(model):
    optimizer = model.optimizer
    skip = {id(optimizer.iterations), id(getattr(optimizer, "_learning_rate", None))}
    return list(model.weights) + [v for v in optimizer.variables if id(v) not in skip]


def cycles_worker(args, report):
    import keras
    import numpy as np

    from hqdepth.training.callbacks import RunBackup, iterations

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(256), keras.layers.BatchNormalization(),
                              keras.layers.Dense(256), keras.layers.Dense(8)])
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    model.optimizer.build(model.trainable_variables)
    backup = RunBackup(args["folder"], save_freq=1)
    backup.set_model(model)
    backup.on_train_begin()
    step = iterations(model)
    variables = _cycles_variables(model)
    if step:
        wrong = [v.path for i, v in enumerate(variables)
                 if not np.array_equal(np.asarray(v), _pattern(step, i, tuple(v.shape)))]
        state = RunBackup.read_state(args["folder"])
        if state["iterations"] != step:
            wrong.append(f"metadata iterations {state['iterations']}")
        report(f"resumed {step} " + (f"BAD {wrong[:3]}" if wrong else "ok"))
    else:
        report("resumed 0 ok")
    for step in range(step + 1, args["cycles"] + 1):
        for index, variable in enumerate(variables):
            variable.assign(_pattern(step, index, tuple(variable.shape)))
        model.optimizer.iterations.assign(step)
        report(f"begin {step}")
        backup._save_model()
        report(f"saved {step}")
    report("done")


def train_worker(args, report):
    """See the module docstring; options: `pause_after` (after the backup of that step: `paused K`, then
    wait to be killed), `save_restored` (a .weights.h5 path: what the backup restored, model and
    optimizer), `print` (report the trainer's output as `print ...` lines and Keras' verbose-2 progress as
    `keras ...` lines)."""
    import signal as signals

    from hqdepth.training import callbacks, trainer

    save, restore = callbacks.RunBackup._save_model, callbacks.RunBackup.restore

    def reporting_save(self):
        step = callbacks.iterations(self.model)
        report(f"begin {step}")
        save(self)
        report(f"saved {step}")
        if step == args.get("pause_after"):
            report(f"paused {step}")
            while True:
                signals.pause()

    def reporting_restore(self, model):
        restore(self, model)
        if args.get("save_restored"):
            model.save_weights(args["save_restored"])
        report(f"restored {callbacks.iterations(model)}")

    callbacks.RunBackup._save_model = reporting_save
    callbacks.RunBackup.restore = reporting_restore
    say = (lambda *a, **k: report("print " + " ".join(map(str, a)))) if args.get("print") else (lambda *a, **k: None)
    with contextlib.redirect_stdout(_KerasLines(report)) if args.get("print") else contextlib.nullcontext():
        results = trainer.train(args["config"], args["data"], args["out"], print_fn=say,
                                verbose=2 if args.get("print") else 0)
    report(f"finished {results['status']}")


class _KerasLines:
    """A stdout that reports each line Keras writes (its progress bar at verbose 2) as `keras ...`."""

    def __init__(self, report):
        self.report, self.text = report, ""

    def write(self, text):
        self.text += text
        *lines, self.text = self.text.split("\n")
        for line in lines:
            self.report("keras " + line)
        return len(text)

    def flush(self):
        pass


WORKERS = {"cycles": cycles_worker, "train": train_worker}


def serve(mode, args):
    """The server loop: fork a worker per `start` line, report its pid and its exit."""
    import keras  # noqa: F401  (the expensive imports, once, before any fork)
    import tensorflow  # noqa: F401

    import hqdepth.training.trainer  # noqa: F401
    from hqdepth.training import callbacks  # noqa: F401

    _report("ready")
    for line in sys.stdin:
        command, _, extra = line.strip().partition(" ")
        if command != "start":
            break
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                WORKERS[mode]({**args, **json.loads(extra or "{}")}, _report)
            except BaseException as error:  # noqa: BLE001 - reported to the test, then a non-zero exit
                _report(f"error {type(error).__name__}: {error}".replace("\n", " ")[:2000])
                status = 3
            os._exit(status)
        _report(f"pid {pid}")
        _, status = os.waitpid(pid, 0)
        _report(f"exit {pid} {status}")


class ForkServer:
    """The test's handle on a fork server (see the module docstring)."""

    def __init__(self, mode, args, stderr_path, env=None, start_timeout=120):
        self.stderr_path = Path(stderr_path)
        self._stderr = open(self.stderr_path, "wb")
        self.process = subprocess.Popen([sys.executable, __file__, mode, json.dumps(args)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._stderr, env=env, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.worker = None
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready", timeout=start_timeout)

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next(self, timeout):
        """The next line (None when the server's stdout closed); fails the test after `timeout` s."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise AssertionError(f"no line from the fork server in {timeout} s; stderr:\n{self.stderr()}") from None

    def expect(self, prefix, timeout=120):
        """Lines up to one that starts with `prefix` (returned); a worker error fails the test."""
        while True:
            line = self.next(timeout)
            if line is None:
                raise AssertionError(f"fork server ended while waiting for {prefix!r}; stderr:\n{self.stderr()}")
            if line.startswith("error "):
                raise AssertionError(f"worker failed: {line}\nstderr:\n{self.stderr()}")
            if line.startswith(prefix):
                return line

    def start(self, **extra):
        """Fork a worker (with `extra` over the server's args); returns its pid."""
        self.process.stdin.write(f"start {json.dumps(extra)}\n")
        self.process.stdin.flush()
        self.worker = int(self.expect("pid ").split()[1])
        return self.worker

    def kill(self, pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stderr(self):
        """The end of the server's stderr (TensorFlow's messages, a worker's traceback)."""
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-4000:]

    def close(self):
        """Stop the worker (if one runs) and the server; never leaves a process behind."""
        if self.worker is not None:
            self.kill(self.worker)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self._stderr.close()


def kill_points(rng, kills, cycles):
    """Which cycles end in a kill: `kills` distinct cycles in 1..cycles-1, drawn with `rng`."""
    return sorted(rng.choice(range(1, cycles), size=kills, replace=False).tolist())


def cluster_member(argv):
    """`python kill_helpers.py --member CLI-ARGS...`: one worker of a test cluster that picks its own port.

    Binds port 0 (the kernel's choice of a free port), prints `port N`, reads the cluster's TF_CONFIG
    (one JSON line) on stdin, releases the port and at once runs `hqdepth CLI-ARGS` (which binds it
    again while creating the strategy). Unlike ports probed and released by the test, the port stays
    bound from the moment it is chosen until microseconds before TensorFlow takes it."""
    import socket

    import tensorflow  # noqa: F401  (the slow import before the port is chosen)

    from hqdepth import cli

    probe = socket.socket()
    probe.bind(("localhost", 0))
    print(f"port {probe.getsockname()[1]}", flush=True)
    os.environ["TF_CONFIG"] = sys.stdin.readline().strip()
    probe.close()
    return cli.main(argv)


def start_cluster(command, count, env, timeout=300):
    """`count` `cluster_member` processes running `command` (hqdepth CLI args; or a list of `count`
    commands, one per worker) as workers of one cluster.

    Returns the Popen objects (stdout: text, the ports line consumed). On any failure every process
    started is killed."""
    commands = command if command and isinstance(command[0], (list, tuple)) else [command] * count
    processes = []
    try:
        for member in commands:
            processes.append(subprocess.Popen([sys.executable, __file__, "--member", *member], env=env, text=True,
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        ports = []
        deadline = time.time() + timeout
        for process in processes:
            line = ""
            while not line.startswith("port "):  # TensorFlow's start-up lines may come first
                line = process.stdout.readline()
                if not line or time.time() > deadline:
                    raise AssertionError("a cluster member ended before choosing its port")
            ports.append(int(line.split()[1]))
        workers = [f"localhost:{port}" for port in ports]
        for index, process in enumerate(processes):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            process.stdin.write(json.dumps(tf_config) + "\n")
            process.stdin.flush()  # left open: communicate() flushes and closes it
        return processes
    except BaseException:
        kill_all(processes)
        raise


def read_until(process, prefix, timeout):
    """Lines of `process.stdout` up to one starting with `prefix` (returned with the lines before it).

    A reader thread feeds a queue kept on the process, so a silent child fails the test after
    `timeout` s instead of blocking it, and later calls continue where this one stopped."""
    if not hasattr(process, "lines"):
        process.lines = queue.Queue()

        def pump():
            for line in process.stdout:
                process.lines.put(line.rstrip("\n"))
            process.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    seen, deadline = [], time.time() + timeout
    while True:
        try:
            line = process.lines.get(timeout=max(deadline - time.time(), 0.01))
        except queue.Empty:
            raise AssertionError(f"no line starting with {prefix!r} in {timeout} s:\n" + "\n".join(seen[-40:])) from None
        if line is None:
            raise AssertionError(f"the process ended before printing {prefix!r}:\n" + "\n".join(seen[-40:]))
        seen.append(line)
        if line.startswith(prefix):
            return seen


def kill_all(processes):
    """SIGKILL and reap every process of the list that still runs."""
    for process in processes:
        if process.poll() is None:
            process.kill()
    for process in processes:
        process.wait(timeout=60)


def communicate_all(processes, timeout):
    """The outputs of all processes; if any is still running after `timeout` s (in all), every one is
    killed and the test fails with what they printed."""
    deadline = time.time() + timeout
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=max(deadline - time.time(), 1))[0])
    except subprocess.TimeoutExpired:
        kill_all(processes)
        partial = [p.stdout.read() if p.stdout and not p.stdout.closed else "" for p in processes]
        raise AssertionError(f"cluster did not finish in {timeout} s; killed. Output:\n" +
                             "\n---\n".join(o[-2000:] for o in partial)) from None
    finally:
        kill_all(processes)
    return outputs


if __name__ == "__main__":
    if sys.argv[1] == "--member":
        sys.exit(cluster_member(sys.argv[2:]))
    serve(sys.argv[1], json.loads(sys.argv[2]))
