"""ONNX export of a real architecture checked with ONNX Runtime against Keras: the FCN autoencoder here;
HQMD baseline+ (ResNet-50 with atrous blocks, fused batch norm, ASPP, odd-size resizes, the ScaledSigmoid
head) and BTS in test_export.py, each converted in a fresh process.

The tiny model of test_export.py covers the export plumbing; these cover the layers a real model
brings (dilated convolutions, FusedBatchNormV3, the decoder's resizes), which tf2onnx must convert.
"""

import numpy as np
import pytest


@pytest.mark.slow  # tf2onnx conversion: tens of seconds on a 2-core CPU
def test_onnx_export_of_the_fcn_autoencoder_matches_keras(tmp_path, rng):
    """The fcn_ssim_mse recipe's model (strided convolutions, fused batch norm, transposed convolutions)."""
    import onnxruntime

    from hqdepth.export import export
    from hqdepth.models import build_model

    model = build_model("fcn_autoencoder", input_shape=(32, 48, 3), max_depth=10.0)
    done = export(model, tmp_path / "onnx", format="onnx", input_size=(32, 48))
    session = onnxruntime.InferenceSession(str(done["path"]), providers=["CPUExecutionProvider"])
    (spec,) = session.get_inputs()
    images = rng.uniform(0, 255, (2, 32, 48, 3)).astype(np.float32)
    got = session.run(None, {spec.name: images})[0]
    want = np.asarray(model(images, training=False))
    assert got.shape == want.shape == (2, 32, 48, 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
