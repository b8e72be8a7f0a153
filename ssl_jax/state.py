"""The train state: everything a bitwise-reproducible resume needs, as one pytree."""

from __future__ import annotations

from typing import Any

import flax
import jax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """step, params, model state (batch stats...), optimizer state and the base RNG key.

  The key is stored as raw uint32 key data so Orbax saves it like any other array; each step
  uses `fold_in(key, step)`, so a resumed run draws exactly the numbers the original would have.
  """

  step: jax.Array
  params: PyTree
  model_state: PyTree
  opt_state: PyTree
  rng: jax.Array

  def step_key(self) -> jax.Array:
    return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)
