"""hqdepth: supervised monocular depth estimation (HQMD and its family) in Keras 3.

Importing the package is cheap: Keras/TensorFlow load only when a submodule that needs them is used.
"""

__version__ = "0.1.0"
