"""RunCheckpoints writes model + optimizer once per checkpoint step (issue 14: time outside the training step)."""

import json
from pathlib import Path

import numpy as np


def test_checkpoints_write_the_model_once_per_validation(tmp_path, monkeypatch):
    """At a validation that falls on a checkpoint step, latest.keras is written once and best.keras is a copy of
    it (each serialisation of model + Adam state costs seconds on a CPU; the demo checkpoints at its validations)."""
    import keras

    from hqdepth.training.callbacks import RunCheckpoints

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(np.ones((2, 4), np.float32), np.ones((2, 1), np.float32))  # iterations = 1
    saves = []
    original = keras.Model.save
    monkeypatch.setattr(keras.Model, "save", lambda self, path, *a, **k: (saves.append(Path(path).name),
                                                                           original(self, path, *a, **k)))
    callback = RunCheckpoints(tmp_path / "checkpoints", every_steps=1)
    callback.set_model(model)
    callback.on_train_batch_end(0)  # a checkpoint step
    callback.on_epoch_end(0, {"val_rmse": 1.0})  # the validation at the same step: improves
    assert saves == ["latest.tmp.keras"]
    latest, best = tmp_path / "checkpoints" / "latest.keras", tmp_path / "checkpoints" / "best.keras"
    assert best.read_bytes() == latest.read_bytes()
    back = keras.saving.load_model(best, compile=False)
    for a, b in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.train_on_batch(np.ones((2, 4), np.float32), np.zeros((2, 1), np.float32))  # iterations = 2
    callback.on_epoch_end(1, {"val_rmse": 2.0})  # not a checkpoint step, no improvement: latest only
    assert saves == ["latest.tmp.keras", "latest.tmp.keras"]
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["value"] == 1.0
