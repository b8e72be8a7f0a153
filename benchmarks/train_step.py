r"""Train-step throughput of a config on this machine's devices, written as JSON.

  python benchmarks/train_step.py --config configs/simclr_digits.py --steps 20 \
      --out /tmp/train_step.json [--config.batch_size=512 ...]

Reports compile time, seconds per step (median over timed steps after one warm-up), examples
per second, and the time of the on-device augmentation alone where the task has one, so the
input side can be compared with the step it feeds.
"""

from __future__ import annotations

import json
import platform
import statistics
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from ssl_jax import parallel, train
from ssl_jax.metrics import write_json

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps.")
_OUT = flags.DEFINE_string("out", "train_step.json", "Where to write the JSON result.")
_WORKDIR = flags.DEFINE_string("workdir", "/tmp/ssl_jax_benchmark", "For cached tokenizers.")


def _seconds(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def main(argv):
  del argv
  config = _CONFIG.value
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, _WORKDIR.value, mesh)
    batch = parallel.global_batch(next(run.batches), run.data_sharding)
    state = run.state
    start = time.perf_counter()
    state, metrics = run.train_step(state, batch)
    jax.block_until_ready(metrics)
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(_STEPS.value):
      start = time.perf_counter()
      state, metrics = run.train_step(state, batch)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
    result = {
        "config": config.task, "model": config.model, "batch_size": config.batch_size,
        "devices": [str(d) for d in jax.devices()], "platform": platform.platform(),
        "jax_version": jax.__version__, "compile_seconds": round(compile_seconds, 3),
        "step_seconds_median": statistics.median(times),
        "examples_per_second": config.batch_size / statistics.median(times),
    }
    if hasattr(run.task, "views"):
      views = jax.jit(run.task.views)
      key = jax.random.key(0)
      _seconds(views, key, batch["image"])
      augment = statistics.median(_seconds(views, key, batch["image"]) for _ in range(10))
      result["augment_seconds_median"] = augment
      result["augment_share_of_step"] = augment / result["step_seconds_median"]
  write_json(_OUT.value, result)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
