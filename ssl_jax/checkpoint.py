"""Orbax checkpoints of the train state together with the input pipeline's position.

Orbax writes each step into a temporary directory and renames it when complete, so a run
killed mid-save keeps its previous checkpoint; `latest_step` only ever sees finished ones.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
  """A checkpoint exists but holds a differently shaped train state."""


class Checkpointer:
  """Saves/restores {"state": TrainState, "data": iterator state (JSON)} under `directory`."""

  def __init__(
    self, directory: str, max_to_keep: int = 3, async_save: bool = True, read_only: bool = False
  ):
    """`read_only` opens another run's checkpoints (a fine-tune's pretraining): nothing is
    created there and its in-progress saves are left alone."""
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      create=not read_only,
      cleanup_tmp_directories=not read_only,
      enable_async_checkpointing=async_save,
      read_only=read_only,
    )
    self.manager = ocp.CheckpointManager(
      self.directory, options=options, item_names=("state", "data")
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict[str, Any]) -> None:
    """Starts saving (asynchronously: the copy to host happens before this returns)."""
    self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)
      ),
      force=True,
    )

  def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
    """Restores step `step` into arrays with `target`'s shapes, dtypes and shardings."""
    abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target
    )
    try:
      restored = self.manager.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()
        ),
      )
    except (ValueError, KeyError, TypeError) as error:
      raise CheckpointMismatchError(
        f"The checkpoint of step {step} in {self.directory} does not match the state this "
        f"config builds (a changed model, task or optimizer?): {error}. Use a fresh workdir, "
        "or the config the checkpoint was written with."
      ) from error
    return restored["state"], restored["data"]

  def restore_arrays(self, step: int) -> dict[str, Any]:
    """The train state of step `step` as saved (a dict of host numpy arrays), without a
    target: what a fine-tune reads from a pretraining run whose optimizer it does not build."""
    restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return jax.tree.map(np.asarray, dict(restored["state"]))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
