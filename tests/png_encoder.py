"""A minimal PNG encoder for test fixtures, independent of OpenCV, so a decoding bug cannot cancel itself out."""

import struct
import zlib

import numpy as np


def png_bytes(array):
    """Minimal PNG encoder: uint8/uint16, grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4)."""
    array = np.asarray(array)
    bit_depth = 16 if array.dtype == np.uint16 else 8
    channels = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 3: 2, 4: 6}[channels]
    height, width = array.shape[:2]
    data = array.astype(">u2" if bit_depth == 16 else "u1").reshape(height, -1).tobytes()
    row = len(data) // height
    raw = b"".join(b"\x00" + data[i * row : (i + 1) * row] for i in range(height))

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
