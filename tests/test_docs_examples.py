"""Every Python example of docs/python-api.md runs, in order, as written (tiny sizes, CPU, no network)."""

import re
from pathlib import Path

import cv2
import numpy as np

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def code_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def write_rgbd_folder(folder, rng, count=6, size=(32, 48)):
    """folder/rgb/NNN.png (8-bit RGB) and folder/depth/NNN.png (16-bit, millimetres)."""
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    for i in range(count):
        depth_mm = rng.uniform(800, 6000, size).astype(np.uint16)
        rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / "rgb" / f"{i:03d}.png"), rgb)
        cv2.imwrite(str(folder / "depth" / f"{i:03d}.png"), depth_mm)


def test_every_python_example_in_the_api_page_runs(tmp_path, monkeypatch, rng, capsys):
    blocks = code_blocks(DOC.read_text())
    assert len(blocks) == 4  # train with fit, fine-tune on a folder, evaluate a SavedModel, predict
    monkeypatch.chdir(tmp_path)
    write_rgbd_folder(tmp_path / "my_rgbd", rng)
    cv2.imwrite(str(tmp_path / "photo.png"), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    namespace = {"__name__": "docs_example"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} example {number}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "rmse" in out and "step 2: loss" in out
    assert (tmp_path / "runs" / "mine" / "checkpoints" / "latest.keras").is_file()
    assert (tmp_path / "exported" / "fcn").is_dir()
    assert namespace["depth"].shape == (40, 60) and namespace["picture"].shape == (40, 60, 3)
    assert np.isfinite(namespace["result"].metrics["rmse"])
