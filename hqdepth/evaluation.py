"""Depth evaluation: published protocols, the NumPy (float64) evaluator, prediction files and models at test time.

The work is done in four modules, one concern each; this module re-exports their public names (the names
below are the compatibility surface of `hqdepth.evaluation`, used by the CLI, the trainer and user code):

- `hqdepth.protocols`: `Protocol` (data: crop, valid range, prediction handling, averaging, test input), the
  presets `PROTOCOLS` reproducing the official evaluators (`nyu-eigen`, `nyu-hqmd`, `nyu-densedepth`,
  `kitti-garg`, `kitti-eigen`, `nyu-hu`, `custom`; facts: specs/evaluation_and_data.md §1-3),
  `custom_protocol`, `get_protocol`, crops and the Hu/SARPN grid.
- `hqdepth.evaluator`: `Evaluator`, `EvaluationResult`, `evaluate_arrays`, `depth_ssim`; per-image formulas
  from `hqdepth.metrics.per_image_errors` (the single implementation, shared with the streaming Keras metrics).
- `hqdepth.pairs`: pairs files (`read_pairs`) and `evaluate_pairs` (`hqdepth evaluate --pairs`).
- `hqdepth.model_testing`: a model run as each protocol's official test code runs it (`model_for_protocol`,
  `protocol_prediction`, `predict_depth`), `evaluate_model` (`hqdepth evaluate --model`) and
  `evaluate_source` (the trainer's test evaluation).

Depth files are read by `hqdepth.images` (`read_depth`, `read_rgb`), the reference resizes are in
`hqdepth.resample`. Warnings of all four go to the `hqdepth.evaluation` logger.
"""

from hqdepth.depth_model import DepthModel  # noqa: F401
from hqdepth.evaluator import (  # noqa: F401
    EvaluationResult, Evaluator, delta_fractions, depth_ssim, evaluate_arrays)
from hqdepth.images import read_depth, read_rgb  # noqa: F401
from hqdepth.model_testing import (  # noqa: F401
    evaluate_model, evaluate_source, model_for_protocol, predict_depth, protocol_prediction)
from hqdepth.pairs import PairLine, evaluate_pairs, read_pairs  # noqa: F401
from hqdepth.protocols import (  # noqa: F401
    ASPECT_TOLERANCE, AVERAGINGS, CROPS, DELTA_COMPARISONS, HU_CROP, HU_SCALE, KB_CROP_SIZE, MASKS, NYU_FRAME,
    PROTOCOLS, TEST_INPUT_WORDS, TEST_INPUTS, Crop, Protocol, aspect_change, custom_protocol, get_protocol,
    hu_crop_box, hu_ground_truth, hu_rgb, hu_scaled_size, metric_names, parse_crop)
from hqdepth.resample import (  # noqa: F401
    resize_bilinear_align_corners, resize_bilinear_tf1, resize_nearest_pil)
