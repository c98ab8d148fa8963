"""hqdepth.data.load: values through the pipeline, shuffling, determinism, sharding, bad records."""

import logging
import struct

import numpy as np
import pytest
import tensorflow as tf

from hqdepth.data import load, open_source
from hqdepth.data.base import Sample, Source, register_source
from hqdepth.errors import ConfigError
from png_encoder import png_bytes

COUNT = 10


@pytest.fixture
def bts_list(tmp_path):
    """COUNT pairs of 12x16; sample i has depth (i + 1) metres everywhere except one 0 pixel."""
    rng = np.random.default_rng(11)
    rgbs, depths, lines = [], [], []
    for i in range(COUNT):
        rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        depth = np.full((12, 16), (i + 1) * 1000, np.uint16)
        depth[0, 0] = 0
        (tmp_path / f"rgb_{i}.png").write_bytes(png_bytes(rgb))
        (tmp_path / f"depth_{i}.png").write_bytes(png_bytes(depth))
        rgbs.append(rgb)
        depths.append(depth / np.float32(1000.0))
        lines.append(f"rgb_{i}.png depth_{i}.png 518.8579")
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    return f"list:{listing}@{tmp_path}?dataset=nyu", rgbs, depths, tmp_path


def ids(batches):
    """Sample numbers (depth value - 1) of every element of a batched dataset, in order."""
    return [int(round(float(d[6, 6, 0]))) - 1 for _, depth in batches for d in depth.numpy()]


def test_values_and_order_without_shuffle(bts_list):
    spec, rgbs, depths, _ = bts_list
    dataset = load(spec, "val", "none", 4)
    batches = list(dataset)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    image, depth = batches[1]
    assert image.dtype == tf.float32 and depth.dtype == tf.float32
    assert np.array_equal(image.numpy()[1], rgbs[5].astype(np.float32))
    assert np.array_equal(depth.numpy()[1, :, :, 0], depths[5])
    assert ids(batches) == list(range(COUNT))


def test_shuffle_repeat_and_determinism(bts_list):
    spec = bts_list[0]
    first = ids(load(spec, "train", "none", 5, seed=7, deterministic=True, repeat=2))
    again = ids(load(spec, "train", "none", 5, seed=7, deterministic=True, repeat=2))
    other = ids(load(spec, "train", "none", 5, seed=8, deterministic=True, repeat=2))
    assert first == again and first != other
    assert sorted(first[:COUNT]) == list(range(COUNT)) and sorted(first[COUNT:]) == list(range(COUNT))
    assert first[:COUNT] != first[COUNT:] and first[:COUNT] != list(range(COUNT))  # reshuffled per pass
    a = [x.numpy() for x, _ in load(spec, "train", "hqmd", 5, size=(8, 10), seed=7, deterministic=True)]
    b = [x.numpy() for x, _ in load(spec, "train", "hqmd", 5, size=(8, 10), seed=7, deterministic=True)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # identical augmentation too


def test_cache_and_infinite_repeat(bts_list):
    spec = bts_list[0]
    cached = load(spec, "train", "none", 3, cache=True, repeat=True, seed=1)
    seen = ids(cached.take(7))  # 21 elements = two passes + 1
    assert sorted(seen[:COUNT]) == list(range(COUNT)) and sorted(seen[COUNT:20]) == list(range(COUNT))


def test_sharding_with_input_context(bts_list):
    spec = bts_list[0]
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id, num_replicas_in_sync=2)
        dataset = load(spec, "train", "none", 4, input_context=context, seed=3)
        batches = list(dataset)
        assert max(b[0].shape[0] for b in batches) == 2  # per-replica batch = 4 / 2
        shards.append(ids(batches))
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(COUNT))


def test_with_focal_scales_with_the_resize(bts_list):
    spec = bts_list[0]
    (image, focal), depth = next(iter(load(spec, "test", "none", 2, size=(6, 8), with_focal=True)))
    assert image.shape == (2, 6, 8, 3) and depth.shape == (2, 12, 16, 1)  # test mode keeps the ground truth
    assert np.allclose(focal.numpy(), 518.8579 * 8 / 16)


def corrupt(tmp_path, rgbs):
    (tmp_path / "rgb_3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    (tmp_path / "depth_6.png").write_bytes(png_bytes(np.ones((11, 16), np.uint16)))


def test_bad_record_fails_loudly_by_default(bts_list):
    spec, rgbs, _, folder = bts_list
    corrupt(folder, rgbs)
    dataset = load(spec, "val", "none", 2)
    with pytest.raises(tf.errors.OpError, match=r"train\.txt:4: rgb .*rgb_3\.png: cannot decode"):
        list(dataset)


def test_skip_bad_counts_and_reports_per_pass(bts_list, caplog):
    spec, rgbs, _, folder = bts_list
    corrupt(folder, rgbs)
    caplog.set_level(logging.WARNING, logger="hqdepth.data")
    dataset = load(spec, "train", "none", 4, skip_bad=True, repeat=2, seed=0)
    seen = ids(dataset)
    assert len(seen) == 2 * (COUNT - 2) and 3 not in seen and 6 not in seen
    assert (dataset.bad_records.total, dataset.bad_records.distinct, dataset.bad_records.passes) == (4, 2, 2)
    assert "2 bad record(s), skipped 4 time(s) over 2 pass(es)" in dataset.bad_records.report()
    assert "differs from depth size" in dataset.bad_records.report()
    warnings = [r.getMessage() for r in caplog.records if "bad record" in r.getMessage()]
    # one warning: the second pass met the same two again
    assert len(warnings) == 1 and "skipped 2 bad record(s) in pass 1, 2 not seen before (2 in all)" in warnings[0]


def test_any_indexed_source_and_errors(bts_list):
    class Tiny(Source):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            rgb = np.full((4, 5, 3), index, np.uint8)
            return Sample(rgb, np.full((4, 5, 1), index + 0.5, np.float32), {"id": str(index)})

    batches = list(load(Tiny(), "val", "none", 3))
    assert np.array_equal(batches[0][1].numpy()[:, 0, 0, 0], [0.5, 1.5, 2.5])
    with pytest.raises(ConfigError, match="repeat"):
        load(Tiny(), "val", "none", 3, repeat="often")
    with pytest.raises(ConfigError, match="batch_size"):
        load(Tiny(), "val", "none", 0)
    with pytest.raises(tf.errors.OpError, match="no focal length"):
        list(load(Tiny(), "val", "none", 3, with_focal=True))


def test_errors_from_tensorflow_gives_back_the_data_error_and_leaves_bugs_alone(bts_list):
    """The DataError a sample raised inside tf.data comes back whole (a multi-line message too); a traceback ending
    in another exception raised while handling one, and any other TensorFlow error, stay as they are."""
    from hqdepth.errors import DataError, errors_from_tensorflow

    spec, rgbs, _, folder = bts_list
    corrupt(folder, rgbs)
    with pytest.raises(DataError, match=r"^\S*train\.txt:4: rgb \S*rgb_3\.png: cannot decode image"):
        with errors_from_tensorflow():
            list(load(spec, "val", "none", 2))

    class Failing(Source):
        def __init__(self, bug):
            self.bug = bug

        def __len__(self):
            return 2

        def __getitem__(self, index):
            try:
                raise DataError("sample 0: the depth file says\nline two of it [x] (y)")
            except DataError:
                if self.bug:
                    raise ValueError("a bug in the handler") from None
                raise

    with pytest.raises(DataError) as error:
        with errors_from_tensorflow():
            list(load(Failing(False), "val", "none", 2))
    assert str(error.value) == "sample 0: the depth file says\nline two of it [x] (y)"
    with pytest.raises(DataError, match="^sample 0 of Failing: ValueError: a bug in the handler$"):
        with errors_from_tensorflow():  # the pipeline reports any failure of a source as a DataError naming it
            list(load(Failing(True), "val", "none", 2))
    # A traceback that ends in another exception, raised while handling a DataError: not a data error.
    chained = ("Error in user-defined function: DataError: x\nTraceback (most recent call last):\n\n  File \"a.py\", "
               "line 1, in f\n\nhqdepth.errors.DataError: x\n\nDuring handling of the above exception, another "
               "exception occurred:\n\nTraceback (most recent call last):\n\n  File \"a.py\", line 3, in f\n\n"
               "KeyError: 'y'\n\n\n\t [[{{node read_sample}}]]")
    with pytest.raises(tf.errors.UnknownError, match="KeyError"):
        with errors_from_tensorflow():
            raise tf.errors.UnknownError(None, None, chained)
    with pytest.raises(tf.errors.InvalidArgumentError):
        with errors_from_tensorflow():
            tf.debugging.assert_equal(1, 2, message="not data")


def test_tfrecord_shards_read_natively_give_the_same_samples(bts_list, tmp_path):
    from hqdepth.data import tools
    spec, rgbs, depths, _ = bts_list
    out = tmp_path / "shards"
    tools.convert(spec, out, split="train", shard_size=4, depth_scale=1000.0)
    dataset = load(f"tfrecord:{out}", "train", "none", 3, seed=1, deterministic=True, repeat=2, with_focal=True)
    seen = []
    for (image, focal), depth in dataset:
        assert np.allclose(focal.numpy(), 518.8579)
        for rgb, d in zip(image.numpy(), depth.numpy()):
            i = int(round(float(d[6, 6, 0]))) - 1
            assert np.array_equal(rgb, rgbs[i].astype(np.float32)) and np.array_equal(d[:, :, 0], depths[i])
            seen.append(i)
    assert sorted(seen) == sorted(list(range(COUNT)) * 2) and seen[:COUNT] != list(range(COUNT))


# ------------------------------------------------------------- tfrecord: focal and bad records

TFR_SPEC = "synthetic:6,size=30x40"


@pytest.fixture(scope="module")
def tfr_dir(tmp_path_factory):
    """`hqdepth.data.tools` shards of TFR_SPEC: 2 shards of 3 records, depth scale 1000."""
    from hqdepth.data import tools
    out = tmp_path_factory.mktemp("tfr") / "synthetic"
    tools.convert(TFR_SPEC, out, shard_size=3, depth_scale=1000.0)
    return out


def depth_sums(batches):
    return sorted(round(float(d.sum()), 3) for item in batches for d in item[1].numpy())


def test_tfrecord_with_focal_scales_with_the_resize(tfr_dir):
    focal = open_source(TFR_SPEC, "train")[0].meta["focal"]
    assert focal > 0
    options = dict(mode="test", shuffle=False, size=(15, 20), with_focal=True)
    (image, scaled), depth = next(iter(load(f"tfrecord:{tfr_dir}", "train", "none", 6, **options)))
    assert image.shape == (6, 15, 20, 3) and depth.shape == (6, 30, 40, 1)
    assert np.allclose(scaled.numpy(), focal * 20 / 40, rtol=1e-6)  # focal stored as float32
    (_, indexed), _ = next(iter(load(TFR_SPEC, "train", "none", 6, **options)))
    assert np.allclose(scaled.numpy(), indexed.numpy(), rtol=1e-6)  # the same as the indexed source


def _replace_record(shard, number, record):
    """Rewrite record `number` of a TFRecord shard with `record` (valid framing and CRCs)."""
    from hqdepth.data.tfrecord import masked_crc32c, record_offsets

    data = shard.read_bytes()
    offset, length = record_offsets(shard)[number]
    header = struct.pack("<Q", len(record))
    framed = header + struct.pack("<I", masked_crc32c(header)) + record + struct.pack("<I", masked_crc32c(record))
    shard.write_bytes(data[: offset - 12] + framed + data[offset + length + 4 :])


def test_tfrecord_skip_bad_uses_the_reader_and_counts(tfr_dir, tmp_path, caplog, capfd):
    import shutil

    from hqdepth.data.tfrecord import decode_example, encode_example, record_offsets

    out = tmp_path / "bad"
    shutil.copytree(tfr_dir, out)
    shard = out / "train-00000-of-00002.tfrecord"
    offset, length = record_offsets(shard)[1]
    features = {k: v[0] for k, v in decode_example(shard.read_bytes()[offset : offset + length]).items()}
    features["rgb"] = b"\x89PNG\r\n\x1a\n" + b"junk" * 10  # framing fine, the RGB PNG does not decode
    _replace_record(shard, 1, encode_example(features))
    source = open_source(f"tfrecord:{out}")
    good = sorted(round(float(source[i].depth.sum()), 3) for i in range(6) if i != 1)

    with pytest.raises(tf.errors.OpError, match=shard.name):
        list(load(f"tfrecord:{out}", "train", "none", 2, shuffle=False))
    capfd.readouterr()
    caplog.set_level(logging.WARNING, logger="hqdepth.data")
    dataset = load(f"tfrecord:{out}", "train", "none", 2, shuffle=False, skip_bad=True, repeat=2)
    batches = list(dataset)
    assert depth_sums(batches) == sorted(good * 2)  # the 5 good records, every pass
    assert (dataset.bad_records.total, dataset.bad_records.distinct, dataset.bad_records.passes) == (2, 1, 2)
    warnings = [r.getMessage() for r in caplog.records if "bad record" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 1 bad record(s) in pass 1, 1 not seen before" in warnings[0]  # pass 2: same
    err = capfd.readouterr().err
    assert "skipped 1 bad record(s) in shard" in err and shard.name in err  # the reader names the shard


@register_source("test-pipeline-half-focal")
class HalfFocal(Source):
    """Four 4x5 samples; only the even ones know their focal length."""

    def __init__(self, argument=None, split="train"):
        pass

    def __len__(self):
        return 4

    def __getitem__(self, index):
        meta = {"id": f"s{index}", **({"focal": 100.0 + index} if index % 2 == 0 else {})}
        return Sample(np.full((4, 5, 3), index, np.uint8), np.full((4, 5, 1), index + 1.0, np.float32), meta)


def test_tfrecord_records_without_focal(tmp_path, caplog):
    from hqdepth.data import tools
    out = tmp_path / "half"
    tools.convert("test-pipeline-half-focal", out, shard_size=4, depth_scale=1000.0)
    with pytest.raises(tf.errors.OpError, match="no focal length"):
        list(load(f"tfrecord:{out}", "train", "none", 4, shuffle=False, with_focal=True))
    dataset = load(f"tfrecord:{out}", "train", "none", 4, shuffle=False, with_focal=True, skip_bad=True)
    (_, focal), depth = next(iter(dataset))
    assert np.allclose(focal.numpy(), [100.0, 102.0]) and np.allclose(depth.numpy()[:, 0, 0, 0], [1.0, 3.0])
    assert dataset.bad_records.total == 2 and "'s1' has no focal length" in dataset.bad_records.report()


def test_synthetic_source_through_the_pipeline():
    source = open_source("synthetic", "train")  # the package's own source: any failure is a failure
    image, depth = next(iter(load(source, "train", "hqmd", 2, size=(29, 38), seed=0)))
    assert image.shape == (2, 29, 38, 3) and depth.shape == (2, 29, 38, 1)


def test_the_pipeline_reads_depth_samples_without_the_geometry():
    """Training reads `Source.depth_sample`: synthetic scenes skip their edges and planes there (half the CPU
    per scene at 64x96), with the same pixels as the full sample."""
    source = open_source("synthetic:4?size=24x32", "val")
    full, lean = source[-1], source.depth_sample(-1)
    np.testing.assert_array_equal(full.rgb, lean.rgb)
    np.testing.assert_array_equal(full.depth, lean.depth)
    assert "edges" in full.meta and set(lean.meta) == {"id", "focal", "seed", "split"}
    assert {k: full.meta[k] for k in lean.meta} == lean.meta
    with pytest.raises(IndexError, match="out of range"):
        source.depth_sample(4)

    class DepthOnly(Source):  # a source that serves training reads only: the pipeline must call depth_sample
        def __len__(self):
            return 4

        def __getitem__(self, index):
            raise AssertionError("the pipeline read a full sample")

        def depth_sample(self, index):
            return source.depth_sample(index)

    images, depths = next(iter(load(DepthOnly(), "val", "none", 4, size=(24, 32), shuffle=False)))
    np.testing.assert_array_equal(np.asarray(images)[3], full.rgb)
    np.testing.assert_allclose(np.asarray(depths)[3], full.depth)


def test_real_frames_through_the_pipeline(realdata):
    nyu = load(f"csv:{realdata / 'nyu_test10' / 'nyu2_mini_test.csv'}?scale=1000", "test", "hqmd", 5)
    image, depth = next(iter(nyu))
    assert image.shape == (5, 289, 385, 3) and depth.shape == (5, 480, 640, 1)
    assert 0.85 < float(tf.reduce_min(depth)) and float(tf.reduce_max(depth)) < 10.0
    kitti = load(f"folder:{realdata / 'kitti3'}?scale=256", "train", "bts_kitti", 3, size=(88, 176), seed=0)
    image, depth = next(iter(kitti))
    assert image.shape == (3, 88, 176, 3) and depth.shape == (3, 88, 176, 1)
    valid = depth.numpy()[depth.numpy() > 0]
    assert valid.size and valid.min() >= 5.1 and valid.max() <= 85.0


# ------------------------------------------------------- resume: a stream that starts after k batches


def batches_of(dataset, count):
    return [(image.numpy(), depth.numpy()) for (image, depth), _ in zip(dataset, range(count))]


@pytest.mark.parametrize("options", [{}, {"cache": True}, {"skip_bad": True}, {"shuffle_buffer": 4},
                                     {"shuffle": False}, {"tfrecord": True}], ids=str)
def test_a_stream_started_after_k_batches_is_the_rest_of_the_full_stream(bts_list, tmp_path, test_seed, options):
    """`start_batches=k` (a resumed run) yields batches k, k+1, ... of the stream from the start: the same
    samples across pass boundaries and the same augmentation of each (hqmd: scale, crop, colour, flip)."""
    options = dict(options)
    spec = bts_list[0]
    if options.pop("tfrecord", False):
        from hqdepth.data import tools

        tools.convert(spec, tmp_path / "shards", split="train", shard_size=4, depth_scale=1000.0)
        spec = f"tfrecord:{tmp_path / 'shards'}"
    seed = test_seed % 1000

    def stream(start):
        return load(spec, "train", "hqmd", 3, size=(8, 10), seed=seed, deterministic=True, repeat=True,
                    drop_remainder=True, start_batches=start, **options)

    full = batches_of(stream(0), 12)  # 36 samples: three and a half passes of 10
    for start in (1, 3, 4, 7):
        rest = batches_of(stream(start), 12 - start)
        for index, ((image, depth), (image0, depth0)) in enumerate(zip(rest, full[start:])):
            np.testing.assert_array_equal(image, image0, err_msg=f"start {start}, batch {start + index}")
            np.testing.assert_array_equal(depth, depth0, err_msg=f"start {start}, batch {start + index}")


def test_each_pass_is_a_permutation_given_by_the_seed_and_the_pass(bts_list, test_seed):
    spec = bts_list[0]
    seed = test_seed % 1000
    first = ids(load(spec, "train", "none", 5, seed=seed, deterministic=True, repeat=4))
    passes = [first[i * COUNT:(i + 1) * COUNT] for i in range(4)]
    assert all(sorted(p) == list(range(COUNT)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # a new order every pass
    # Pass 2 started on its own is pass 2 of the stream (start_batches = 2 passes of 2 batches).
    assert ids(load(spec, "train", "none", 5, seed=seed, deterministic=True, repeat=4, start_batches=4))[:COUNT] == passes[2]
    # Without a seed each pass is still a permutation, different between two loads; as the stream is not
    # deterministic, parallel reads may finish out of order across a pass boundary (seen once under load,
    # HQDEPTH_TEST_SEED=426995197), so the two passes are checked together: every sample twice.
    unseeded = [ids(load(spec, "train", "none", 5, repeat=2)) for _ in range(3)]
    assert all(sorted(u) == sorted(list(range(COUNT)) * 2) for u in unseeded)
    assert len({tuple(u) for u in unseeded}) > 1
