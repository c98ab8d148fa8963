"""Augmentation throughput alone (no decoding): one 480x640 NYU-sized frame repeated through a recipe in a
parallel `tf.data` map, batch 4, samples per second. `python benchmarks/augment_speed.py [recipe ...]`."""

import sys
import time

import numpy as np
import tensorflow as tf

from hqdepth.data.augment import get_recipe

SIZES = {"hu": (228, 304), "hqmd": (289, 385), "bts": (416, 544)}


def samples_per_second(name, count=400):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 10, (480, 640, 1)).astype(np.float32)
    recipe = get_recipe(name, "train", size=SIZES.get(name))
    dataset = tf.data.Dataset.from_tensors((rgb, depth)).repeat(count).enumerate()
    dataset = dataset.map(lambda i, x: recipe(x[0], x[1], tf.stack([tf.constant(1, tf.int64), i])),
                          num_parallel_calls=tf.data.AUTOTUNE).batch(4)
    batches = iter(dataset)
    next(batches)  # traced and warmed up
    start, seen = time.perf_counter(), 0
    for rgb_batch, _ in batches:
        seen += int(rgb_batch.shape[0])
    return seen / (time.perf_counter() - start)


if __name__ == "__main__":
    for recipe_name in sys.argv[1:] or ["hu", "hqmd", "bts"]:
        print(f"{recipe_name}: {samples_per_second(recipe_name):.1f} samples/s")
