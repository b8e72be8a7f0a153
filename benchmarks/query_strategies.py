r"""Seconds for one active-learning query, written as JSON.

  python benchmarks/query_strategies.py --out /tmp/query_strategies.json
  python benchmarks/query_strategies.py --pool 2000 --dim 32 --budget 10 --repeats 1 --out x.json

Core-set, BADGE, TypiClust and ProbCover choose `budget` (100) examples from a pool of
`pool` (100,000) x `dim` (256) random features (1,000 of them labelled) with 10-class
probabilities; BALD and BatchBALD (10 of them) score the 1,797 digits under `mc_samples` (20)
Monte-Carlo dropout masks of a 64 -> 256 -> 10 head, whose deterministic first layer is
computed once for all masks. Each timing is the median of `repeats` after one compiling call.
"""

from __future__ import annotations

import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from ssl_jax.active import strategies as _strategies  # noqa: F401  (registers the strategies)
from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool
from ssl_jax.data.digits import digits

_POOL = flags.DEFINE_integer("pool", 100_000, "Pool size.")
_DIM = flags.DEFINE_integer("dim", 256, "Feature dimension.")
_BUDGET = flags.DEFINE_integer("budget", 100, "Examples per query.")
_MC = flags.DEFINE_integer("mc_samples", 20, "Monte-Carlo dropout masks for BALD.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed queries per strategy (after a warm-up).")
_OUT = flags.DEFINE_string("out", None, "Where to write the JSON.")
flags.mark_flag_as_required("out")


def _median_seconds(fn, repeats: int) -> float:
  fn()  # compiles
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def mc_dropout_probs(images: np.ndarray, samples: int, key: jax.Array, rate: float = 0.5):
  """[samples, N, 10] probabilities of a 64 -> 256 -> 10 head under `samples` dropout masks,
  the same mask for every example of one sample; the first layer is computed once."""
  k1, k2, k3 = jax.random.split(key, 3)
  w1 = jax.random.normal(k1, (images.shape[1], 256)) / np.sqrt(images.shape[1])
  w2 = jax.random.normal(k2, (256, 10)) / 16.0

  @jax.jit
  def forward(x):
    hidden = jax.nn.relu(x @ w1)  # deterministic: once
    masks = jax.random.bernoulli(k3, 1 - rate, (samples, 1, 256)) / (1 - rate)
    return jax.nn.softmax((hidden[None] * masks) @ w2, -1)

  return forward(jnp.asarray(images, jnp.float32))


def main(argv):
  del argv
  keys = jax.random.split(jax.random.key(0), 4)
  n, d, budget = _POOL.value, _DIM.value, _BUDGET.value
  features = jax.random.normal(keys[0], (n, d))
  probs = jax.nn.softmax(jax.random.normal(keys[1], (n, 10)) * 2, -1)
  labelled = np.zeros(n, bool)
  labelled[np.asarray(jax.random.permutation(keys[2], n))[: min(1000, n // 10)]] = True
  pool = Pool(labelled=labelled, features=features, probs=probs)
  record = {
    "pool": n,
    "dim": d,
    "budget": budget,
    "labelled": int(labelled.sum()),
    "devices": [str(device) for device in jax.devices()],
    "seconds": {},
  }
  for name in ("coreset", "badge", "typiclust", "probcover", "entropy", "random"):
    strategy = QUERY_STRATEGIES.build(name, {})
    record["seconds"][name] = _median_seconds(
      lambda strategy=strategy: strategy.query(pool, budget, keys[3]), _REPEATS.value
    )
    print(f"{name}: {record['seconds'][name]:.3f} s", flush=True)
  images = np.asarray(digits().split("train")["image"]).reshape(-1, 64)
  images = np.concatenate([images, np.asarray(digits().split("test")["image"]).reshape(-1, 64)])
  digits_pool = Pool(labelled=np.zeros(len(images), bool))
  record["digits_pool"] = len(images)
  record["mc_samples"] = _MC.value

  def bald_query(name, count):
    mc = mc_dropout_probs(images, _MC.value, keys[3])
    pool = Pool(labelled=digits_pool.labelled, mc_probs=mc)
    return QUERY_STRATEGIES.build(name, {}).query(pool, count, keys[3])

  record["seconds"]["bald (with the MC forward)"] = _median_seconds(
    lambda: bald_query("bald", budget), _REPEATS.value
  )
  record["seconds"]["batch_bald (10)"] = _median_seconds(
    lambda: bald_query("batch_bald", 10), _REPEATS.value
  )
  for name in ("bald (with the MC forward)", "batch_bald (10)"):
    print(f"{name}: {record['seconds'][name]:.3f} s", flush=True)
  with open(_OUT.value, "w") as f:
    json.dump(record, f, indent=2)
    f.write("\n")


if __name__ == "__main__":
  app.run(main)
