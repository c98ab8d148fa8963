"""Imports every source module so that its SPEC kind is registered. Add new source modules here."""
from hqdepth.data import sources  # noqa: F401  (nyu-mat, densedepth, list, kitti, folder, csv)
from hqdepth.data import synthetic  # noqa: F401  (synthetic)
from hqdepth.data import tfrecord  # noqa: F401  (tfrecord)
from hqdepth.data import ibims  # noqa: F401  (ibims)
