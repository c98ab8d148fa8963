"""Pictures of a run for people: depth panels on shared colour scales and training curves, drawn with OpenCV.

`summary_figure` makes the one picture to look at first after a run (the demo writes it to
`demo_output/summary.png`): one row per image, photo | ground truth | prediction | absolute error, where
ground truth and prediction of every row share one depth colour scale and the errors share one error
scale (colour bars with metres underneath), and below them the loss and RMSE curves of the run.
`read_scalars` reads those curves from a run's TensorBoard folder (`logs/train`, `logs/validation`).

Only NumPy and OpenCV are used (no matplotlib), so the figure can be drawn wherever the package runs.
"""

from pathlib import Path

import numpy as np

from hqdepth.predict import colorize

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (150, 150, 150)
LIGHT = (225, 225, 225)
# Curve colours (RGB): training, validation, test, reference.
COLORS = {"train": (31, 119, 180), "validation": (214, 39, 40), "test": (44, 160, 44), "reference": (120, 120, 120)}
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def read_scalars(log_dir):
    """{run: {tag: (steps int64 array, values float64 array)}} from the TensorBoard event files under `log_dir`.

    run is the sub-folder (e.g. "train", "validation"); events of a resumed run are merged in step order.
    Scalars written by `tf.summary.scalar` (tensor values) and by the v1 API (simple values) are read.
    """
    import tensorflow as tf

    log_dir = Path(log_dir)
    found = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        run = path.parent.relative_to(log_dir).as_posix()
        points = found.setdefault(run, {})
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.HasField("tensor"):
                    array = tf.make_ndarray(value.tensor)
                    if array.ndim or array.dtype.kind not in "fiu":
                        continue  # images, text
                    number = float(array)
                elif value.HasField("simple_value"):
                    number = float(value.simple_value)
                else:
                    continue
                points.setdefault(value.tag, {})[int(event.step)] = number
    return {run: {tag: (np.array(sorted(d), dtype=np.int64), np.array([d[s] for s in sorted(d)], dtype=np.float64))
                  for tag, d in tags.items()}
            for run, tags in found.items()}


def _text(canvas, text, origin, scale=0.5, color=BLACK, thickness=1, anchor="left"):
    """Draw `text` with its baseline at `origin` (x, y); anchor left | centre | right."""
    import cv2

    (width, _), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    x, y = origin
    if anchor == "centre":
        x -= width // 2
    elif anchor == "right":
        x -= width
    cv2.putText(canvas, text, (int(x), int(y)), _FONT, scale, color, thickness, cv2.LINE_AA)


def _nice_ticks(lo, hi, count=5):
    """About `count` round tick values covering [lo, hi]."""
    span = hi - lo if hi > lo else 1.0
    raw = span / max(count, 1)
    magnitude = 10 ** np.floor(np.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=10 * magnitude)
    first = np.ceil(lo / step) * step
    return [float(v) for v in np.arange(first, hi + 1e-9 * span, step)]


def colour_bar(width, height, value_range, colormap, label):
    """An RGB uint8 (height, width, 3) horizontal colour bar for `value_range` (metres) with ticks and `label`."""
    bar_height = max(height // 3, 8)
    canvas = np.full((height, width, 3), 255, np.uint8)
    lo, hi = value_range
    margin = 20
    ramp = np.linspace(lo, hi, width - 2 * margin, dtype=np.float32)[None, :].repeat(bar_height, axis=0)
    canvas[2:2 + bar_height, margin:width - margin] = colorize(ramp, colormap, (lo, hi))
    for tick in _nice_ticks(lo, hi, 5):
        x = margin + int(round((tick - lo) / (hi - lo) * (width - 2 * margin - 1)))
        canvas[2 + bar_height:6 + bar_height, x] = 0
        _text(canvas, f"{tick:g}", (x, 18 + bar_height), 0.4, anchor="centre")
    _text(canvas, label, (width // 2, height - 4), 0.45, anchor="centre")
    return canvas


def curves_panel(width, height, series, title, ylabel, log_y=False, hlines=()):
    """An RGB uint8 (height, width, 3) line plot.

    series: [(label, steps, values, colour, style)] with style "line" or "points"; hlines: [(label, value, colour)]
    drawn as dashed horizontal lines (e.g. a reference predictor). `log_y` plots log10 of positive values.
    """
    import cv2

    canvas = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 56, 12, 26, 38
    _text(canvas, title, (width // 2, 17), 0.5, anchor="centre")
    values = [np.asarray(v, np.float64) for _, _, v, _, _ in series if len(v)] + [np.array([v]) for _, v, _ in hlines]
    steps = [np.asarray(s, np.float64) for _, s, v, _, _ in series if len(v)]
    if not values or not steps:
        _text(canvas, "no data", (width // 2, height // 2), 0.5, GREY, anchor="centre")
        return canvas
    every = np.concatenate(values)
    every = every[np.isfinite(every) & ((every > 0) if log_y else True)]
    transform = np.log10 if log_y else (lambda v: v)
    y_lo, y_hi = (float(transform(every.min())), float(transform(every.max()))) if every.size else (0.0, 1.0)
    if log_y:
        y_lo, y_hi = np.floor(y_lo * 4) / 4, np.ceil(y_hi * 4) / 4
    else:
        y_lo = min(0.0, y_lo)
        y_hi = y_hi * 1.05 if y_hi > 0 else 1.0
    if y_hi <= y_lo:
        y_hi = y_lo + 1.0
    x_hi = float(max(s.max() for s in steps)) or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def to_pixels(xs, ys):
        xs = left + np.asarray(xs, np.float64) / x_hi * plot_w
        ys = top + plot_h - (transform(np.asarray(ys, np.float64)) - y_lo) / (y_hi - y_lo) * plot_h
        return np.stack([xs, ys], axis=-1)

    for tick in _nice_ticks(0, x_hi, 5):
        x = int(round(left + tick / x_hi * plot_w))
        cv2.line(canvas, (x, top), (x, top + plot_h), LIGHT, 1)
        _text(canvas, f"{tick:g}", (x, top + plot_h + 14), 0.38, anchor="centre")
    for tick in _nice_ticks(y_lo, y_hi, 4):
        y = int(round(top + plot_h - (tick - y_lo) / (y_hi - y_lo) * plot_h))
        cv2.line(canvas, (left, y), (left + plot_w, y), LIGHT, 1)
        shown = f"{10 ** tick:.3g}" if log_y else f"{tick:g}"
        _text(canvas, shown, (left - 4, y + 4), 0.38, anchor="right")
    cv2.rectangle(canvas, (left, top), (left + plot_w, top + plot_h), GREY, 1)
    _text(canvas, "step", (left + plot_w // 2, height - 6), 0.4, anchor="centre")
    _text(canvas, ylabel, (4, top - 8), 0.4)
    legend_y = top + 14
    for label, value, colour in hlines:
        y = int(round(to_pixels([0.0], [value])[0, 1]))
        for x in range(left, left + plot_w, 12):
            cv2.line(canvas, (x, y), (min(x + 6, left + plot_w), y), colour, 1, cv2.LINE_AA)
        _text(canvas, f"{label} {value:.3g}", (left + plot_w - 4, y - 4), 0.38, colour, anchor="right")
    for label, xs, ys, colour, style in series:
        ys = np.asarray(ys, np.float64)
        keep = np.isfinite(ys) & ((ys > 0) if log_y else True)
        if not keep.any():
            continue
        points = np.round(to_pixels(np.asarray(xs)[keep], ys[keep])).astype(np.int32)
        if style == "points":
            for x, y in points:
                cv2.circle(canvas, (int(x), int(y)), 4, colour, -1, cv2.LINE_AA)
        else:
            cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
        cv2.line(canvas, (left + 8, legend_y - 4), (left + 26, legend_y - 4), colour, 2)
        _text(canvas, label, (left + 32, legend_y), 0.4, colour)
        legend_y += 15
    return canvas


def smooth(values, window):
    """Running mean over `window` points (shorter at the start), for noisy per-step curves."""
    values = np.asarray(values, np.float64)
    if window <= 1 or values.size == 0:
        return values
    sums = np.cumsum(np.insert(values, 0, 0.0))
    index = np.arange(1, values.size + 1)
    start = np.maximum(index - window, 0)
    return (sums[index] - sums[start]) / (index - start)


def summary_figure(rgbs, gts, preds, names=None, curves=None, title=None, scale=3, depth_range=None,
                   error_range=None, edges=None):
    """The run's summary picture: RGB uint8 (H, W, 3).

    rgbs: photos (N, h, w, 3) uint8; gts, preds: depths (N, h, w) or (N, h, w, 1) in metres (gt <= 0 or
    non-finite = no ground truth, drawn black). names: a caption per row (e.g. the scene id). Each panel is
    enlarged `scale` times with nearest-neighbour sampling (every pixel stays visible as it is).
    depth_range: (lo, hi) metres of the one colour scale shared by every ground truth and prediction (default 0
    to the largest valid ground truth); error_range: (0, hi) of the one scale of every |prediction - truth|
    (default 0 to the 99th percentile of the shown errors). curves: panels below the rows, a list of
    `curves_panel` arguments as dicts (title, ylabel, series, log_y, hlines). edges: true occlusion edges
    (N, h, w) bool, drawn white over the ground truth and the prediction (does the predicted step sit on them?).
    """
    import cv2

    rgbs = np.asarray(rgbs)
    gts = np.asarray(gts, np.float32).reshape(rgbs.shape[:3])
    preds = np.asarray(preds, np.float32).reshape(rgbs.shape[:3])
    valid = np.isfinite(gts) & (gts > 0)
    errors = np.where(valid, np.abs(preds - gts), np.nan)
    if depth_range is None:
        top = float(gts[valid].max()) if valid.any() else float(np.nanmax(preds))
        depth_range = (0.0, float(np.ceil(top)))
    if error_range is None:
        shown = errors[np.isfinite(errors)]
        error_range = (0.0, max(float(np.ceil(np.percentile(shown, 99) * 4) / 4) if shown.size else 1.0, 0.25))
    count, height, width = rgbs.shape[:3]
    panel_w, panel_h, gap = width * scale, height * scale, 6
    label_w = 150
    columns = ("photo", "ground truth", "prediction", "|prediction - truth|")
    if edges is not None:
        columns = ("photo", "ground truth + true edges", "prediction + true edges", "|prediction - truth|")
    figure_w = label_w + 4 * panel_w + 5 * gap
    rows = []
    header = np.full((44 if title else 26, figure_w, 3), 255, np.uint8)
    if title:
        _text(header, title, (figure_w // 2, 18), 0.55, anchor="centre")
    for c, name in enumerate(columns):
        _text(header, name, (label_w + gap + c * (panel_w + gap) + panel_w // 2, header.shape[0] - 8), 0.5,
              anchor="centre")
    rows.append(header)

    def big(image):
        return cv2.resize(image, (panel_w, panel_h), interpolation=cv2.INTER_NEAREST)

    for i in range(count):
        row = np.full((panel_h + gap, figure_w, 3), 255, np.uint8)
        gt_rgb = colorize(np.where(valid[i], gts[i], np.nan), "plasma", depth_range)
        pred_rgb = colorize(preds[i], "plasma", depth_range)
        if edges is not None:
            gt_rgb[np.asarray(edges[i], bool)] = WHITE
            pred_rgb[np.asarray(edges[i], bool)] = WHITE
        err_rgb = colorize(errors[i], "magma", error_range)
        for c, image in enumerate((rgbs[i].astype(np.uint8), gt_rgb, pred_rgb, err_rgb)):
            x = label_w + gap + c * (panel_w + gap)
            row[:panel_h, x:x + panel_w] = big(image)
        caption = names[i] if names is not None else f"image {i}"
        rmse = float(np.sqrt(np.nanmean(errors[i] ** 2))) if np.isfinite(errors[i]).any() else float("nan")
        _text(row, str(caption), (8, panel_h // 2 - 8), 0.42)
        _text(row, f"RMSE {rmse:.2f} m", (8, panel_h // 2 + 12), 0.42)
        rows.append(row)
    bars = np.full((46, figure_w, 3), 255, np.uint8)
    x_depth = label_w + gap + panel_w + gap
    bars[:, x_depth:x_depth + 2 * panel_w + gap] = colour_bar(2 * panel_w + gap, 46, depth_range, "plasma",
                                                              "depth (m), one scale for every ground truth and prediction")
    x_error = label_w + gap + 3 * (panel_w + gap)
    bars[:, x_error:x_error + panel_w] = colour_bar(panel_w, 46, error_range, "magma", "absolute error (m)")
    rows.append(bars)
    if curves:
        panel_width = (figure_w - gap * (len(curves) + 1)) // len(curves)
        strip = np.full((300, figure_w, 3), 255, np.uint8)
        for k, spec in enumerate(curves):
            x = gap + k * (panel_width + gap)
            strip[:, x:x + panel_width] = curves_panel(panel_width, 300, **spec)
        rows.append(strip)
    return np.concatenate(rows, axis=0)


def write_png(path, rgb):
    """Write an RGB uint8 picture as PNG (parent folders created); returns the path."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
