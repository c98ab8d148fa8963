"""hqdepth: supervised monocular depth estimation with Keras 3 / TensorFlow."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "hqdepth" / "__init__.py").read_text()).group(1)

DOCS = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]

setup(
    name="hqdepth",
    version=VERSION,
    description="HQMD (ICIP 2019) and related monocular depth models in Keras 3 / TensorFlow",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["hqdepth", "hqdepth.*"]),
    # the recipes and their sources tables are data files, not packages (no __init__.py)
    package_data={"hqdepth.training": ["recipes/*.yaml", "recipes/sources/*.yaml"]},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.10",
        "numpy",
        "opencv-python-headless",
        "pandas",
        "h5py",
        "scipy",
        "tqdm",
        "pyyaml",
        "tensorboard",  # tf.summary writers (TensorFlow no longer depends on it)
        "safetensors",  # torchvision / BTS state dicts without PyTorch (hqdepth.weights.torch)
        "pillow",  # the Hu/SARPN test protocol resizes RGB with PIL's bilinear filter, as their loaders do
        "scikit-image",  # Canny of the iBims-1 depth boundary errors, as the official evaluation code calls it
    ],
    extras_require={
        # the suite also builds the docs (tests/test_docs.py), so `test` includes the `docs` packages
        "test": ["pytest", "pytest-xdist>=3.2", "jax[cpu]", "tf2onnx>=1.17", "onnx", "onnxruntime", *DOCS],
        # `hqdepth export --format onnx` (Keras 3 model.export(format="onnx") = tf2onnx) and ONNX Runtime
        "onnx": ["tf2onnx>=1.17", "onnx", "onnxruntime"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        # `make docs`: MkDocs (1.x: Material does not support MkDocs 2) with the Material theme and
        # mkdocstrings' Python handler (API reference from the docstrings)
        "docs": DOCS,
    },
    entry_points={"console_scripts": ["hqdepth=hqdepth.cli:main"]},
)
