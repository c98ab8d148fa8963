"""tf.data assembly: SPEC source -> parallel decode -> augmentation recipe -> batches.

    ds = hqdepth.data.load("list:train.txt@/data/nyu?format=bts&dataset=nyu", "train", "bts", 8)
    model.fit(ds, ...)

Indexed sources (everything but `tfrecord:`) are read through a `range` dataset of sample
indices and a parallel `tf.numpy_function` map, so decoding runs on several threads and the
index order can be shuffled cheaply (full shuffle by default). `tfrecord:DIR` uses the native
reader `hqdepth.data.tfrecord.tfrecord_dataset`.

Bad records: by default a sample that cannot be read (corrupt image, size mismatch, NaN depth...)
stops iteration with an error whose message names the file (a `tf.errors.OpError`, usually
`UnknownError`, wrapping the `DataError` text; `hqdepth.errors.errors_from_tensorflow` unwraps it).
With `skip_bad=True` it is dropped, counted in the
`BadRecords` object returned as `dataset.bad_records`, and a warning with the count is logged
at the end of every pass through the data. For `tfrecord:DIR` the reader itself drops bad
records (`skip_bad_records=True`, with a warning naming the shard); the pipeline counts them per
pass against the manifest's record count.
"""

import logging
import random
import threading

import numpy as np
import tensorflow as tf

from hqdepth.data.augment import Recipe, get_recipe
from hqdepth.data.base import Source, open_source, parse_spec
from hqdepth.errors import ConfigError, DataError

log = logging.getLogger("hqdepth.data")
AUTOTUNE = tf.data.AUTOTUNE

_OK, _BAD, _END_OF_PASS = 0, 1, 2
_SEED_STRIDE = 1_000_003  # separates the augmentation seeds of different input pipelines


class BadRecords:
    """Counts records skipped with `skip_bad=True`; keeps the first few messages.

    `distinct`: the bad records (each sample's message counted once, however often it is read), `total`: the
    reads skipped over the dataset's life (every pass, and what the pipeline reads ahead of the steps taken),
    `passes` completed passes, `messages` (the first `keep` distinct ones), and `report()` for a summary. A
    warning is logged at the end of each pass that met bad records not seen before.
    """

    def __init__(self, keep=10):
        self.keep = keep
        self.total = 0
        self.distinct = 0
        self.passes = 0
        self.messages = []
        self._seen = set()
        self._in_pass = self._new_in_pass = 0
        self._lock = threading.Lock()

    def record(self, message, count=1):
        """Count `count` skipped records described by one `message`."""
        with self._lock:
            self.total += count
            self._in_pass += count
            if message not in self._seen:
                self._seen.add(message)
                self.distinct += count
                self._new_in_pass += count
                if len(self.messages) < self.keep:
                    self.messages.append(message)

    def end_pass(self):
        with self._lock:
            self.passes += 1
            skipped, self._in_pass = self._in_pass, 0
            new, self._new_in_pass = self._new_in_pass, 0
        if new:
            log.warning(
                "hqdepth.data: skipped %d bad record(s) in pass %d, %d not seen before (%d in all). First: %s",
                skipped,
                self.passes,
                new,
                self.distinct,
                self.messages[0] if self.messages else "",
            )
        return skipped

    def report(self):
        if not self.total:
            return f"no bad records ({self.passes} pass(es))"
        shown = "\n  ".join(self.messages)
        return (f"{self.distinct} bad record(s), skipped {self.total} time(s) over {self.passes} pass(es); first "
                f"ones:\n  {shown}")

    def __int__(self):
        return self.distinct

    def __repr__(self):
        return f"BadRecords(distinct={self.distinct}, total={self.total}, passes={self.passes})"


def _repeat_count(repeat):
    if repeat is True:
        return -1
    if repeat in (False, None, 0, 1):
        return None
    if isinstance(repeat, int) and repeat > 1:
        return repeat
    raise ConfigError(f"repeat={repeat!r} must be True (forever), False or a number of passes.")


def _indexed_reader(source, skip_bad, with_focal):
    """numpy function: index -> (rgb uint8, depth float32, focal float32, status int32, error message)."""
    empty_rgb = np.zeros((0, 0, 3), np.uint8)
    empty_depth = np.zeros((0, 0, 1), np.float32)
    read_sample = getattr(source, "depth_sample", source.__getitem__)  # Source subclasses, or any indexable

    def read(index):
        index = int(index)
        if index < 0:
            return empty_rgb, empty_depth, np.float32(np.nan), np.int32(_END_OF_PASS), b""
        try:
            try:
                sample = read_sample(index)
            except DataError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure of a source becomes a DataError
                raise DataError(f"sample {index} of {type(source).__name__}: {type(error).__name__}: {error}") from error
            rgb = np.asarray(sample.rgb)
            depth = np.asarray(sample.depth, dtype=np.float32)
            if depth.ndim == 2:
                depth = depth[:, :, None]
            name = sample.meta.get("id", index)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise DataError(f"{name}: rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}.")
            if rgb.shape[:2] != depth.shape[:2]:
                raise DataError(f"{name}: RGB size {rgb.shape[:2]} differs from depth size {depth.shape[:2]}.")
            focal = sample.meta.get("focal")
            if with_focal and focal is None:
                raise DataError(f"{name}: no focal length known for this sample, and the model takes one (with_focal="
                                f"True, e.g. bts_kitti). Give it per sample: a `list:` file in BTS's format (rgb depth "
                                f"focal) or a `csv:` file (rgb,depth,focal).")
            focal = np.float32(np.nan if focal is None else focal)
            return rgb, depth, focal, np.int32(_OK), b""
        except DataError as error:
            if not skip_bad:
                raise
            return empty_rgb, empty_depth, np.float32(np.nan), np.int32(_BAD), str(error).encode("utf-8", "replace")

    def read_tf(index):
        rgb, depth, focal, status, message = tf.numpy_function(
            read, [index], (tf.uint8, tf.float32, tf.float32, tf.int32, tf.string), stateful=True, name="read_sample"
        )
        rgb.set_shape([None, None, 3])
        depth.set_shape([None, None, 1])
        for scalar in (focal, status, message):
            scalar.set_shape([])
        return rgb, depth, focal, status, message

    return read_tf


def _pass_reporter(bad_records):
    """Sequential stage after the (order-keeping) read: counts bad records, reports at each end of pass."""

    def on_status(status, message):
        if int(status) == _BAD:
            bad_records.record(message.decode("utf-8", "replace"))
        elif int(status) == _END_OF_PASS:
            bad_records.end_pass()
        return status

    def report(rgb, depth, focal, status, message):
        status = tf.numpy_function(on_status, [status, message], tf.int32, stateful=True, name="report_bad")
        status.set_shape([])
        return rgb, depth, focal, status

    return report


def load(
    spec,
    split="train",
    recipe="none",
    batch_size=8,
    *,
    size=None,
    mode=None,
    recipe_options=None,
    shuffle=None,
    shuffle_buffer=None,
    seed=None,
    deterministic=None,
    cache=False,
    repeat=False,
    drop_remainder=False,
    skip_bad=False,
    input_context=None,
    with_focal=False,
    num_parallel_calls=AUTOTUNE,
    prefetch=AUTOTUNE,
    bad_records=None,
    source_options=None,
    start_batches=0,
):
    """A batched, prefetched `tf.data.Dataset` of (image float32 0..255 (B, H, W, 3), depth float32
    metres (B, H, W, 1)); with `with_focal=True`, ((image, focal (B,)), depth), the focal length
    scaled by the recipe's resize.

    spec: SPEC string (docs/datasets.md, "SPEC grammar") or an opened `Source`. split: train | val | test | all.
    recipe: augmentation name (`hqdepth.data.augment`), optionally 'name?key=value', or a Recipe;
    recipe_options: its keyword options; size: its output (H, W).
    mode: recipe mode; default "train" for split train, "test" for split test, else "val".
    shuffle: default True in train mode. Sample indices are shuffled over the whole (shard of the)
    dataset unless `shuffle_buffer` is given; with `cache` (or tfrecord) decoded samples are
    shuffled with a buffer (default min(N, 1024) / 1024).
    seed: shuffle and augmentation seed (default: random in train mode, 0 otherwise).
    deterministic: True keeps the element order and, with the seed (0 if None), makes two runs
    yield identical batches; False lets parallel reads finish out of order; None (default) keeps
    the order only when not shuffling, so an evaluation sees the source order.
    cache: True (memory) or a file path; caches decoded, un-augmented samples.
    repeat: True (forever), False (one pass) or a number of passes.
    input_context: a `tf.distribute.InputContext`: samples are sharded by input pipeline and
    batched with the per-replica batch size (`batch_size` is then the global batch size).
    batch_size None: unbatched. skip_bad: drop unreadable samples, counted in
    `dataset.bad_records` (a `BadRecords`; pass your own with `bad_records=`) and reported at the
    end of every pass. source_options: keyword options for `open_source`.

    start_batches: batches of this stream already consumed (by a run that was interrupted): the
    dataset continues the same stream after them, the order across passes and the augmentation of
    every sample as if it had been read from the start (the resume of `hqdepth train`). Needs a
    seed (or shuffle off) for the same order, and `drop_remainder` or `repeat` so batches are full.
    How the position is reached depends on the source: for an indexed source without `cache`,
    `skip_bad` or `shuffle_buffer` the index order of pass p is a pure function of (seed, p) and the
    first sample is found by arithmetic, without reading anything; otherwise (`tfrecord:`, `cache`,
    `skip_bad`, `shuffle_buffer`) the consumed samples are read again and dropped (exact with a seed
    and `deterministic=True`; costs reading them).
    """
    mode = mode or ("train" if split == "train" else "test" if split == "test" else "val")
    augmentation = get_recipe(recipe, mode=mode, size=size, **dict(recipe_options or {}))
    if not isinstance(augmentation, Recipe):
        raise ConfigError(f"recipe={recipe!r} is not an augmentation recipe.")
    shuffle = (mode == "train") if shuffle is None else bool(shuffle)
    if seed is None and (deterministic or mode != "train"):
        seed = 0  # reproducible runs, and the same validation crops every epoch
    # Element order: kept unless shuffling (an evaluation sees the source order); deterministic=True
    # also keeps it while shuffling, so a seeded run is reproducible; False lets fast elements overtake.
    deterministic = (not shuffle) if deterministic is None else bool(deterministic)
    shuffle_seed = seed  # None: a fresh order every run
    if seed is None:
        seed = random.randrange(2**31 - 1)
    repeat_count = _repeat_count(repeat)
    bad_records = bad_records if bad_records is not None else BadRecords()
    pipeline_id, pipelines = 0, 1
    if input_context is not None:
        pipeline_id, pipelines = input_context.input_pipeline_id, input_context.num_input_pipelines
        if batch_size is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
    if batch_size is not None and int(batch_size) <= 0:
        raise ConfigError(f"batch_size={batch_size!r} must be positive.")
    start_batches = int(start_batches or 0)
    if start_batches < 0:
        raise ConfigError(f"start_batches={start_batches!r} must be >= 0.")
    start = start_batches * (int(batch_size) if batch_size is not None else 1)  # samples of this pipeline consumed

    kind = None if isinstance(spec, Source) else parse_spec(spec)[0]
    if kind == "tfrecord":
        samples = _tfrecord_samples(
            spec, split, shuffle, deterministic, skip_bad, cache, with_focal, shuffle_seed, pipeline_id, pipelines, bad_records,
        )
        if shuffle:
            samples = samples.shuffle(shuffle_buffer or 1024, seed=shuffle_seed, reshuffle_each_iteration=True)
        if repeat_count:
            samples = samples.repeat(repeat_count)
        skip = start
    else:
        source = spec if isinstance(spec, Source) else open_source(spec, split, **dict(source_options or {}))
        if shuffle and shuffle_seed is None:
            shuffle_seed = seed  # the index permutations are functions of (seed, pass)
        samples, skip = _indexed_samples(
            source, shuffle, shuffle_buffer, shuffle_seed, cache, repeat_count, skip_bad, with_focal,
            bad_records, deterministic, num_parallel_calls, pipeline_id, pipelines, start,
        )
    if skip:
        samples = samples.skip(skip)  # read again and dropped: the position of a resumed run

    base_seed = int(seed) + pipeline_id * _SEED_STRIDE

    def augment(counter, element):
        rgb, depth, focal = element
        element_seed = tf.stack([tf.constant(base_seed, tf.int64), counter])
        image, depth, zoom = augmentation.transform(rgb, depth, element_seed)
        if with_focal:
            return (image, focal * zoom), depth
        return image, depth

    # The counter seeds each sample's augmentation: a resumed stream numbers its samples from `start`.
    dataset = samples.enumerate(start=start).map(augment, num_parallel_calls=num_parallel_calls, deterministic=deterministic)
    if batch_size is not None:
        dataset = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    if prefetch:
        dataset = dataset.prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    if input_context is not None:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = dataset.with_options(options)
    try:
        dataset.bad_records = bad_records
    except AttributeError:  # pragma: no cover - tf.data objects accept attributes today
        pass
    return dataset


def _index_passes(shard, shuffle, seed, first_pass, passes, offset):
    """The index stream: pass p is a permutation of `shard` that depends on (seed, p) only (the
    identity without shuffle), followed by the end-of-pass marker -1; passes `first_pass` ..
    `passes - 1` (None: forever), the first one from position `offset`."""
    shard = tf.constant(shard, tf.int64)
    count = int(shard.shape[0])
    seed = tf.constant(int(seed or 0) % (2**63 - 1), tf.int64)
    end = tf.constant([-1], tf.int64)

    def one_pass(index):
        order = shard
        if shuffle:
            order = tf.gather(shard, tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64),
                                                                             seed=tf.stack([seed, index])))
        skip = tf.where(tf.equal(index, first_pass), tf.constant(offset, tf.int64), tf.constant(0, tf.int64))
        return tf.data.Dataset.from_tensor_slices(tf.concat([order[skip:], end], 0))

    numbers = tf.data.Dataset.range(first_pass, passes) if passes is not None else tf.data.Dataset.range(
        first_pass, 2**62)
    return numbers.flat_map(one_pass)


def _indexed_samples(
    source, shuffle, shuffle_buffer, shuffle_seed, cache, repeat_count, skip_bad, with_focal,
    bad_records, deterministic, num_parallel_calls, pipeline_id, pipelines, start=0,
):
    """(rgb, depth, focal) elements of an indexable Source: shuffled indices -> parallel decode.

    Returns (samples, skip): `skip` samples still to be dropped to reach position `start` (0 when the
    index stream could start there itself)."""
    total = len(source)
    if total == 0:
        raise DataError(f"{getattr(source, 'listing', None) or type(source).__name__}: no samples.")
    indices = tf.data.Dataset.range(total)
    count = total
    if pipelines > 1:
        indices = indices.shard(pipelines, pipeline_id)
        count = len(range(pipeline_id, total, pipelines))
        if count == 0:
            raise DataError(f"{total} samples cannot be sharded over {pipelines} input pipelines.")
    end_of_pass = tf.data.Dataset.from_tensors(tf.constant(-1, tf.int64))
    skip = start
    if not cache and not skip_bad and not (shuffle and shuffle_buffer):
        # Positions by arithmetic: `start` samples = whole passes + an offset into the next one.
        first_pass, offset = divmod(start, count)
        passes = 1 if not repeat_count else (None if repeat_count < 0 else repeat_count)
        if passes is not None and first_pass >= passes:
            first_pass, offset = passes, 0  # past the end: an empty stream
        indices = _index_passes(range(pipeline_id, total, pipelines), shuffle, shuffle_seed, first_pass, passes, offset)
        skip = 0
    elif not cache:
        if shuffle:
            indices = indices.shuffle(shuffle_buffer or count, seed=shuffle_seed, reshuffle_each_iteration=True)
        indices = indices.concatenate(end_of_pass)
        if repeat_count:
            indices = indices.repeat(repeat_count)
    else:
        indices = indices.concatenate(end_of_pass)

    reader = _indexed_reader(source, skip_bad, with_focal)
    # With skip_bad the read order is kept so that the end-of-pass report follows every read of its pass.
    samples = indices.map(reader, num_parallel_calls=num_parallel_calls, deterministic=bool(deterministic or skip_bad))
    samples = samples.map(_pass_reporter(bad_records))
    samples = samples.filter(lambda rgb, depth, focal, status: tf.equal(status, _OK))
    samples = samples.map(lambda rgb, depth, focal, status: (rgb, depth, focal))
    if cache:
        samples = samples.cache("" if cache is True else str(cache))
        if shuffle:
            samples = samples.shuffle(shuffle_buffer or min(count, 1024), seed=shuffle_seed, reshuffle_each_iteration=True)
        if repeat_count:
            samples = samples.repeat(repeat_count)
    return samples, skip


def _tfrecord_samples(spec, split, shuffle, deterministic, skip_bad, cache, with_focal, seed, pipeline_id, pipelines, bad_records):
    """(rgb, depth, focal) elements from TFRecord shards via the native reader (focal NaN when unknown).

    With `skip_bad` the reader drops bad records itself (warning naming the shard); at the end of
    each pass the records that did not come out are counted in `bad_records` against the manifest,
    and records without a focal length are dropped and counted when `with_focal`. The count is
    taken before the input-pipeline shard: every pipeline reads (and counts) every record.
    """
    from hqdepth.data.tfrecord import split_section, tfrecord_dataset  # the tfrecord module owns the format

    directory = parse_spec(spec)[1]
    if not directory:
        raise ConfigError("tfrecord needs a folder: tfrecord:DIR.")
    records = tfrecord_dataset(
        directory,
        split=split,
        shuffle_files=bool(shuffle and not deterministic),
        num_parallel_reads=AUTOTUNE,
        seed=seed,
        with_meta=True,
        skip_bad_records=bool(skip_bad),  # the reader drops bad records and warns naming the shard
    )
    split, section = split_section(directory, split)
    expected = sum(int(shard["records"]) for shard in section["shards"])
    where = f"tfrecord:{directory} split {split!r}"
    rgb_spec, depth_spec, _ = records.element_spec

    def on_no_focal(sample_id):
        bad_records.record(f"{where}: record {sample_id.decode('utf-8', 'replace')!r} has no focal length (with_focal=True).")
        return np.int64(0)

    def on_end_of_pass(seen):
        dropped = expected - int(seen)
        if dropped > 0 and skip_bad:  # without skip_bad the reader raised (a prefetch may still end the pass)
            bad_records.record(
                f"{where}: {dropped} bad record(s) dropped by the TFRecord reader (its warning names the shard).", dropped
            )
        bad_records.end_pass()
        return np.int64(0)

    def call(function, argument):
        done = tf.numpy_function(function, [argument], tf.int64, stateful=True, name="report_bad")
        done.set_shape([])
        return done

    def check(seen, element):
        rgb, depth, meta, is_end = element
        focal = tf.cast(meta["focal"], tf.float32)
        no_focal = tf.logical_and(tf.logical_not(is_end), tf.logical_not(focal > 0)) if with_focal else tf.constant(False)
        if with_focal and not skip_bad:
            checks = [tf.debugging.Assert(tf.logical_not(no_focal), ["tfrecord record", meta["id"], "has no focal length (with_focal=True)"])]
        elif with_focal:
            checks = [tf.cond(no_focal, lambda: call(on_no_focal, meta["id"]), lambda: tf.constant(0, tf.int64))]
        else:
            checks = []
        checks.append(tf.cond(is_end, lambda: call(on_end_of_pass, seen), lambda: tf.constant(0, tf.int64)))
        with tf.control_dependencies(checks):
            keep = tf.logical_not(tf.logical_or(is_end, no_focal))
        return seen + tf.cast(tf.logical_not(is_end), tf.int64), (rgb, depth, focal, keep)

    def to_triple(rgb, depth, focal, keep):  # the end-of-pass element made the shapes unknown
        rgb, depth = tf.ensure_shape(rgb, rgb_spec.shape), tf.ensure_shape(depth, depth_spec.shape)
        return rgb, depth, tf.where(focal > 0, focal, tf.constant(np.nan, tf.float32))

    end_of_pass = tf.data.Dataset.from_tensors(
        (tf.zeros((0, 0, 3), tf.uint8), tf.zeros((0, 0, 1), tf.float32), {"id": tf.constant(""), "focal": tf.constant(0.0)}, True)
    )
    records = records.map(lambda rgb, depth, meta: (rgb, depth, meta, False)).concatenate(end_of_pass)
    records = records.scan(tf.constant(0, tf.int64), check).filter(lambda rgb, depth, focal, keep: keep).map(to_triple)
    if pipelines > 1:
        records = records.shard(pipelines, pipeline_id)
    if cache:
        records = records.cache("" if cache is True else str(cache))
    return records
