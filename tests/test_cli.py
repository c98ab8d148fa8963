"""The `hqdepth` command starts fast and quiet: no TensorFlow where none is needed, no C++ log lines.

Each command runs in a fresh interpreter (a subprocess): TensorFlow's load-time lines are printed by
C++ once per process, so only a new process can show whether they leak. The environment is the one a
user has by default: no `TF_CPP_MIN_LOG_LEVEL` (TensorFlow 2.21 prints the lines whatever it says).
"""

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from hqdepth import cli, quiet

# Any absl/glog-format line ("I0000 00:00:1795980459.709239    5900 port.cc:153] ...") or absl's banner,
# independently of hqdepth.quiet's own pattern.
LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|absl::InitializeLog|oneDNN custom operations|cuda drivers"
                      r"|Unable to register cu|cpu_feature_guard|TF_ENABLE_ONEDNN_OPTS|\[ WARN:")

# Runs the command line given as JSON in argv[1], then reports which heavy modules were imported.
RUNNER = """
import json, sys, time
start = time.perf_counter()
from hqdepth.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as exit:
    code = exit.code
report = {"code": code or 0, "seconds": time.perf_counter() - start,
          "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}
print("HQDEPTH-REPORT " + json.dumps(report))
"""


def user_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}
    env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"  # about third-party code, not what this tests
    return env


def run_cli(argv, cwd=None):
    """(report dict, stdout without the report line, stderr, wall seconds of the whole process)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(argv)], capture_output=True, text=True,
                          env=user_environment(), cwd=cwd, timeout=600)
    wall = time.perf_counter() - start
    lines = done.stdout.splitlines()
    reports = [line for line in lines if line.startswith("HQDEPTH-REPORT ")]
    assert reports, f"no report; stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    stdout = "\n".join(line for line in lines if not line.startswith("HQDEPTH-REPORT "))
    return json.loads(reports[-1].split(" ", 1)[1]), stdout, done.stderr, wall


def log_lines(text):
    return [line for line in text.splitlines() if LOG_LINE.search(line)]


@pytest.mark.parametrize("argv", [["--help"], ["models"], ["recipes"], ["recipes", "hqmd_plus_full"],
                                  ["evaluate", "--help"], ["train", "--help"]])
def test_commands_that_need_no_tensorflow_do_not_load_it(argv):
    report, stdout, stderr, wall = run_cli(argv)
    assert report["code"] == 0, stderr
    assert not report["tensorflow"] and not report["keras"], f"{argv} imported TensorFlow/Keras"
    assert log_lines(stdout + "\n" + stderr) == []
    assert stderr.strip() == ""
    if argv == ["models"]:
        assert wall < 3.0, f"`hqdepth models` took {wall:.2f} s (whole process)"
        for name in ("hqmd_baseline_plus", "bts", "mrpan"):
            assert name in stdout
        assert "40,435,473" in stdout  # baseline+ (hqmd.md section 2.5: 40.435 M), from the catalog


@pytest.mark.slow  # two TensorFlow start-ups (this process and the command's)
def test_a_tensorflow_command_prints_no_log_line(tmp_path, rng):
    """`hqdepth predict` loads TensorFlow and Keras, a model and runs it on the CPU: output only, no C++ logging
    (TensorFlow's, nor OpenCV's warning about the truncated PNG, which the command reports itself)."""
    import cv2

    from predict_helpers import tiny_model

    tiny_model((None, None, 3)).save(tmp_path / "tiny.keras")
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "photo.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    (photos / "cut.png").write_bytes((photos / "photo.png").read_bytes()[:200])
    argv = ["predict", str(tmp_path / "tiny.keras"), str(photos), "--out", str(tmp_path / "out"), "--quiet"]
    report, stdout, stderr, _ = run_cli(argv, cwd=tmp_path)
    assert report["code"] == 1 and "cut.png" in stderr, stderr  # the bad file, reported by the command
    assert report["tensorflow"]  # the command did load TensorFlow ...
    assert log_lines(stdout + "\n" + stderr) == [], stderr  # ... and nothing of its logging leaked
    assert [path.name for path in (tmp_path / "out").iterdir() if path.name.startswith("photo")]


def test_a_reader_that_has_gone_ends_the_command_quietly():
    """`hqdepth recipes NAME --sources | head -1`: no BrokenPipeError traceback, nor Python's complaint at exit."""
    process = subprocess.Popen([sys.executable, "-m", "hqdepth.cli", "recipes", "hqmd_plus_full", "--sources"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=user_environment())
    process.stdout.close()  # before the command writes anything
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1 and stderr == "", stderr


@pytest.mark.slow  # a TensorFlow start-up
def test_a_bad_sample_inside_the_pipeline_is_one_line_and_status_2(tmp_path):
    """A DataError raised while tf.data reads a sample reaches the user as its message (not TensorFlow's wrapper and
    a traceback), and the process ends with status 2 (the tf.data iterator kept alive by the error's traceback
    made TensorFlow abort at exit: "terminate called without an active exception", status 134). Here bts_kitti,
    whose model takes each frame's focal length, on a folder that gives none; the first validation frame is read
    before any model is built."""
    import cv2

    rng = np.random.default_rng(0)
    for kind in ("rgb", "depth"):
        (tmp_path / "frames" / kind).mkdir(parents=True)
    for index in range(2):
        cv2.imwrite(str(tmp_path / "frames" / "rgb" / f"{index}.png"), rng.integers(0, 256, (96, 192, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "frames" / "depth" / f"{index}.png"), rng.integers(256, 9000, (96, 192), np.uint16))
    argv = ["train", "bts_kitti", "--data", f"folder:{tmp_path / 'frames'}?scale=256", "--out", str(tmp_path / "run"),
            "--batch-size", "1", "--quiet"]
    # (no test evaluation: kitti-garg's KB crop does not fit these small frames, which the run says before training)
    for item in ("data.input_size=[64, 128]", "model.options.backbone_weights=none", "model.options.freeze=none",
                 "train.test_evaluation=false"):
        argv += ["--set", item]
    done = subprocess.run([sys.executable, "-m", "hqdepth.cli", *argv], capture_output=True, text=True,
                          env={**user_environment(), "HQDEPTH_OFFLINE": "1"}, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hqdepth train: error: ") and "0.png: no focal length known" in last, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "run" / "model.keras").exists()


def test_filter_replays_everything_but_tensorflow_load_lines(capfd):
    """What the quiet import does with file descriptor 2: C-level writes captured, noise dropped, the rest
    replayed in order (Python warnings and errors during the import must still reach the user)."""
    noise = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
             "I0000 00:00:1795980459.709239    5900 port.cc:153] oneDNN custom operations are on. ...",
             "I0000 00:00:1795980459.709963    5900 cudart_stub.cc:31] Could not find cuda drivers on your machine",
             "E0000 00:00:1732.5 12 cuda_dnn.cc:8310] Unable to register cuDNN factory: Attempting to register",
             "W0000 00:00:1732.5 12 external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cudart",
             "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
             "appropriate compiler flags."]
    kept = ["/x/site.py:3: UserWarning: something the user should see", "F0000 00:00:1.0 1 a.cc:1] fatal: kept",
            "Traceback (most recent call last):"]
    with quiet.filtered_stderr_fd():
        os.write(2, ("\n".join([noise[0], kept[0], *noise[1:3], kept[1], *noise[3:], kept[2]]) + "\n").encode())
    captured = capfd.readouterr()
    assert captured.err.splitlines() == kept
    assert all(quiet.is_noise(line) for line in noise) and not any(quiet.is_noise(line) for line in kept)


def test_verbose_leaves_tensorflow_logging_alone(monkeypatch, capsys):
    """`--verbose` (before or after the command name) installs nothing; without it the level is 3 and the
    import hook is in place until TensorFlow loads."""
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    for argv in (["--verbose", "models", "--no-count"], ["models", "--no-count", "--verbose"]):
        assert cli.wants_verbose(argv)
        assert cli.main(argv) == 0
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
        assert not any(isinstance(finder, quiet._QuietTensorFlowFinder) for finder in sys.meta_path)
    assert not cli.wants_verbose(["predict", "--", "--verbose"])
    assert cli.main(["models", "--no-count"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert "hqmd_baseline_plus" in capsys.readouterr().out
