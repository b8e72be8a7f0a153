"""Host-side input pipeline: deterministic, resumable, per-process slices of the global batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from ssl_jax.data.records import take_rows
from ssl_jax.errors import DataError


class ShuffledBatches(Iterator[dict[str, np.ndarray]]):
  """Endless epoch-shuffled batches over a dict of equally long arrays.

  The batch at position p depends only on (seed, p): epoch e = p // steps_per_epoch is a fresh
  permutation seeded by (seed, e); the final partial batch of each epoch is dropped so every
  batch has the same static shape. Each process takes its contiguous slice of the global batch.
  `get_state()`/`set_state()` make the position part of the checkpoint, so a resumed run sees
  exactly the batches an uninterrupted one would have.
  """

  def __init__(
    self,
    arrays: dict[str, np.ndarray],
    global_batch_size: int,
    seed: int,
    process_index: int | None = None,
    process_count: int | None = None,
  ):
    self.arrays = arrays
    self.num_examples = len(next(iter(arrays.values())))
    self.global_batch_size = global_batch_size
    self.seed = seed
    self.process_index = jax.process_index() if process_index is None else process_index
    self.process_count = jax.process_count() if process_count is None else process_count
    if global_batch_size % self.process_count:
      raise DataError(
        f"batch_size {global_batch_size} is not divisible by the {self.process_count} processes."
      )
    if global_batch_size > self.num_examples:
      raise DataError(
        f"batch_size {global_batch_size} is larger than the dataset ({self.num_examples} examples)."
      )
    self.steps_per_epoch = self.num_examples // global_batch_size
    self.position = 0
    self._epoch, self._perm = -1, None

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._epoch:
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
      self._epoch = epoch
    return self._perm

  def indices(self, position: int) -> np.ndarray:
    """Global example indices of the batch at `position` (all processes)."""
    epoch, index = divmod(position, self.steps_per_epoch)
    start = index * self.global_batch_size
    return self._permutation(epoch)[start : start + self.global_batch_size]

  def __next__(self) -> dict[str, np.ndarray]:
    indices = self.indices(self.position)
    local = self.global_batch_size // self.process_count
    indices = indices[self.process_index * local : (self.process_index + 1) * local]
    self.position += 1
    return take_rows(self.arrays, indices)

  def get_state(self) -> dict[str, Any]:
    return {
      "position": self.position,
      "seed": self.seed,
      "num_examples": self.num_examples,
      "global_batch_size": self.global_batch_size,
    }

  def set_state(self, state: dict[str, Any]) -> None:
    for key in ("seed", "num_examples", "global_batch_size"):
      if state[key] != getattr(self, key):
        raise DataError(
          f"Checkpointed input pipeline has {key}={state[key]}, but this run has "
          f"{key}={getattr(self, key)}: resuming would not reproduce the same batches. "
          "Use a fresh workdir for a changed data config."
        )
    self.position = int(state["position"])


def batches_in_order(
  arrays: dict[str, np.ndarray], batch_size: int
) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Every example once, in order, in fixed-size batches; the last is zero-padded.

  Yields (batch, num_valid) so evaluators keep one compiled shape and drop the padding after.
  """
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    batch = {}
    for key, chunk in take_rows(arrays, np.arange(start, stop)).items():
      value = arrays[key]
      if stop - start < batch_size:
        pad = np.zeros((batch_size - (stop - start),) + value.shape[1:], value.dtype)
        chunk = np.concatenate([chunk, pad])
      batch[key] = chunk
    yield batch, stop - start
