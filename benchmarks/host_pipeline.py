r"""Image decoding on the host: ssl_jax's pipeline (shuffled batches of an `image_folder` split,
decoded on a thread pool) against grain (the same decode in worker processes), as JSON.

  pip install -e ".[benchmarks]"   # grain
  python benchmarks/host_pipeline.py --out /tmp/host_pipeline.json

The benchmark writes `--images` JPEGs of 320x240 into class directories, then reads
`--batches` shuffled batches of `--batch_size` images resized and centre-cropped to
`--image_size`, three ways: ssl_jax's `ShuffledBatches` over the `image_folder` split (PIL
releases the GIL, so threads decode in parallel), grain's `MapDataset` in this process, and
grain with `mp_prefetch` over one worker process per CPU. Every reader uses the same
`image_decode.decode_image`, and each runs twice (the second run, with the files in the page
cache, is reported).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time

import grain
import numpy as np
from absl import app, flags
from PIL import Image

from ssl_jax.data import image_decode
from ssl_jax.data.pipeline import ShuffledBatches
from ssl_jax.metrics import write_json
from ssl_jax.registry import DATASETS

_OUT = flags.DEFINE_string("out", "host_pipeline.json", "Where to write the JSON result.")
_ROOT = flags.DEFINE_string("root", "/tmp/ssl_jax_host_pipeline", "Where the JPEGs are written.")
_IMAGES = flags.DEFINE_integer("images", 2000, "JPEG files.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Images per batch.")
_BATCHES = flags.DEFINE_integer("batches", 20, "Batches read per timing.")
_SIZE = flags.DEFINE_integer("image_size", 224, "Output side.")
_THREADS = flags.DEFINE_integer(
  "threads", 16, "ssl_jax's decoding threads (image_folder's default)."
)


def write_images(root: str, count: int) -> None:
  rng = np.random.default_rng(0)
  ys, xs = np.mgrid[0:240, 0:320]
  for index in range(count):
    directory = os.path.join(root, f"class{index % 10}")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{index}.jpg")
    if os.path.isfile(path):
      continue
    # Smooth colour fields plus noise: compresses like a photograph, not like flat colour.
    phase = rng.random(3) * 6.28
    base = np.stack([np.sin(xs / 37 + ys / 53 + p) for p in phase], -1) * 100 + 128
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _decode(path: str, size: int) -> np.ndarray:
  return image_decode.decode_image(path, size, 3)


def _stack(images):
  return np.stack(images)


def time_batches(iterator, batches: int) -> float:
  """Images per second over `batches` batches (after one, which starts workers)."""
  next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    batch = next(iterator)
  seconds = time.perf_counter() - start
  images = batch["image"] if isinstance(batch, dict) else batch
  assert images.shape == (_BATCH.value, _SIZE.value, _SIZE.value, 3), images.shape
  return batches * _BATCH.value / seconds


def main(argv):
  del argv
  root = os.path.join(_ROOT.value, "images")
  write_images(root, _IMAGES.value)
  dataset = DATASETS.build(
    "image_folder",
    {"path": root, "image_size": _SIZE.value, "test_fraction": 0.1, "num_threads": _THREADS.value},
    None,
  )
  split = dataset.split("train")
  files = sorted(
    os.path.join(dirpath, name) for dirpath, _, names in os.walk(root) for name in names
  )

  def grain_iterator(workers: int):
    decode = functools.partial(_decode, size=_SIZE.value)  # picklable for the workers
    pipeline = grain.MapDataset.source(files).shuffle(seed=0).map(decode)
    pipeline = pipeline.batch(_BATCH.value, drop_remainder=True, batch_fn=_stack).repeat()
    iterable = pipeline.to_iter_dataset()
    if workers:
      iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(iterable)

  readers = {
    "ssl_jax_threads": lambda: ShuffledBatches(split, _BATCH.value, 0, 0, 1),
    "grain_in_process": lambda: grain_iterator(0),
    f"grain_{os.cpu_count()}_worker_processes": lambda: grain_iterator(os.cpu_count()),
  }
  rates = {}
  for name, make in readers.items():
    for _ in range(2):
      rates[name] = time_batches(make(), _BATCHES.value)
  result = {
    "images_per_second": rates,
    "image_size": _SIZE.value,
    "batch_size": _BATCH.value,
    "ssl_jax_threads": _THREADS.value,
    "source_jpeg": "320x240, quality 90",
    "cpu_count": os.cpu_count(),
    "grain_version": getattr(grain, "__version__", "?"),
    "platform": platform.platform(),
  }
  write_json(_OUT.value, result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  app.run(main)
