"""Small models and image writers shared by test_predict.py and test_export.py."""

import struct

import numpy as np


def tiny_model(input_shape, seed=3, max_depth=8.0, name="tiny"):
    """A few layers with the package's custom layers (normalisation, align-corners resize, ScaledSigmoid head);
    outputs spread over roughly 2..6 m (not saturated), not mirror-symmetric."""
    import keras

    from hqdepth.layers import BilinearResize, ImageNormalization, ScaledSigmoid

    keras.utils.set_random_seed(seed)
    image = keras.Input(input_shape)
    x = ImageNormalization("inception")(image)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(x)
    x = BilinearResize(name="up")([x, image])
    x = keras.layers.Conv2D(1, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(stddev=0.3))(x)
    return keras.Model(image, ScaledSigmoid(max_depth, name="depth")(x), name=name)


def hqmd_model(input_shape, seed=0):
    """hqmd_baseline_plus with random weights, its logits layer rescaled so that depths spread over the range
    instead of saturating at 0 and max_depth (a random ResNet's logits are huge); BN statistics untouched."""
    import keras

    from hqdepth.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("hqmd_baseline_plus", input_shape=input_shape)
    logits = model.get_layer("logits")
    probe = keras.Model(model.input, logits.output)
    rng = np.random.default_rng(seed)
    sample = rng.integers(0, 256, (2, *input_shape), dtype=np.uint8).astype(np.float32)
    values = np.asarray(probe(sample, training=False))
    kernel, bias = logits.get_weights()
    scale = 1.5 / max(float(values.std()), 1e-6)
    logits.set_weights([kernel * scale, (bias - values.mean()) * scale])
    return model


def exif_jpeg(rgb, orientation, quality=95):
    """JPEG bytes of `rgb` (stored as is) with an EXIF APP1 segment whose Orientation tag is `orientation`."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    data = encoded.tobytes()
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    body = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]


def read_ply(path):
    """(header lines, structured vertex array) of a binary little-endian PLY with float x,y,z and uchar colours."""
    raw = open(path, "rb").read()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    types = {"float": "<f4", "uchar": "u1"}
    fields = [(line.split()[2], types[line.split()[1]]) for line in header if line.startswith("property")]
    vertices = np.frombuffer(raw[end:], dtype=fields)
    assert len(vertices) == count
    return header, vertices
