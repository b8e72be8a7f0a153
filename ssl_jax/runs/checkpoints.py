"""Orbax checkpoints of the train state together with the input pipeline's position.

Orbax writes each step into a temporary directory and renames it when complete, so a run
killed mid-save keeps its previous checkpoint; `latest_step` only ever sees finished ones.

Each checkpoint also carries the run record (the fingerprint of the config that made it and
that config's run-defining part). A restore tells two failures apart:
  - a genuine difference (the saved tree has other shapes, or the fingerprint differs):
    `CheckpointMismatchError`, naming the differences;
  - damage (unreadable metadata, truncated arrays, a missing item): the step is moved to
    `<directory>/damaged/<step>` and the newest intact step is used instead.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import traceback
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from ssl_jax.errors import CheckpointError, CheckpointMismatchError
from ssl_jax.runs.record import RunRecord, list_changes

RUN_KEY = "run"  # data item key of the run record: {"fingerprint": str, "config": {...}}
DAMAGED_DIR = "damaged"


def saved_steps(directory: str) -> list[int]:
  """The steps with a finished checkpoint under `directory` (a cheap listing: no Orbax)."""
  if not os.path.isdir(directory):
    return []
  return sorted(
    int(entry.name) for entry in os.scandir(directory) if entry.is_dir() and entry.name.isdigit()
  )


class DamagedCheckpointError(CheckpointError):
  """One checkpoint step cannot be read back although it matches the state asked for."""

  def __init__(self, step: int, reason: str):
    super().__init__(f"the checkpoint of step {step} is damaged ({reason})")
    self.step, self.reason = step, reason


def _reason(error: BaseException) -> str:
  """A one-line reason from an Orbax/TensorStore error (which can run to kilobytes)."""
  text = " ".join(str(error).split()) or type(error).__name__
  return text[:160] + ("..." if len(text) > 160 else "")


def _ignore_closed_loop_callbacks() -> None:
  """After a failed read, TensorStore threads still finishing the sibling reads call back into
  the event loop Orbax has closed; Python prints each "Event loop is closed" as an ignored
  exception with a traceback. Those (only those) are dropped."""
  closed = lambda value: isinstance(value, RuntimeError) and str(value) == "Event loop is closed"
  previous = sys.unraisablehook
  if not getattr(previous, "ssl_jax_filter", False):

    def unraisable_hook(unraisable) -> None:
      if not closed(unraisable.exc_value):
        previous(unraisable)

    unraisable_hook.ssl_jax_filter = True
    sys.unraisablehook = unraisable_hook
  previous_thread_hook = threading.excepthook  # the same callback, raised in a thread
  if not getattr(previous_thread_hook, "ssl_jax_filter", False):

    def thread_hook(arguments) -> None:
      if not closed(arguments.exc_value):
        previous_thread_hook(arguments)

    thread_hook.ssl_jax_filter = True
    threading.excepthook = thread_hook
  asyncio_logger = logging.getLogger("asyncio")
  if not any(isinstance(f, _UnretrievedReadFailures) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_UnretrievedReadFailures())


class _UnretrievedReadFailures(logging.Filter):
  """Drops asyncio's "Task exception was never retrieved" for Orbax/TensorStore read tasks:
  the siblings of a failed restore, collected (and logged) whenever the failure's traceback
  lets go of them, which can be after the read itself. The failure is reported by the caller;
  any other asyncio error still logs."""

  def filter(self, record: logging.LogRecord) -> bool:
    if not str(record.msg).startswith("Task exception was never retrieved"):
      return True
    text = record.getMessage() + "".join(
      traceback.format_exception(*record.exc_info) if record.exc_info else ()
    )
    return not ("tensorstore" in text.lower() or "orbax" in text.lower())


@contextlib.contextmanager
def _quiet_asyncio():
  """Orbax restores arrays in asyncio tasks; when one fails, every sibling logs "Task
  exception was never retrieved" with the full TensorStore spec. The failure itself is
  reported once, by the caller."""
  # Installed before reading: TensorStore threads may call back while the read still fails.
  _ignore_closed_loop_callbacks()
  logger = logging.getLogger("asyncio")
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    gc.collect()  # the unretrieved futures log when collected: collect them while quiet
    logger.setLevel(level)


def _file_system_error(error: BaseException) -> OSError | None:
  """The OSError behind `error` (Orbax may re-raise a background write's failure wrapped)."""
  seen = 0
  while error is not None and seen < 10:
    if isinstance(error, OSError):
      return error
    error, seen = error.__cause__ or error.__context__, seen + 1
  return None


def _leaf_name(path: tuple[Any, ...]) -> str:
  """The dotted name Orbax gives a leaf ("opt_state.0.mu.encoder.kernel")."""
  parts = []
  for entry in path:
    for attribute in ("key", "name", "idx"):
      if hasattr(entry, attribute):
        parts.append(str(getattr(entry, attribute)))
        break
  return ".".join(parts)


def leaf_differences(
  saved: dict[str, Any], wanted: dict[str, Any], wanted_by: str, absent: Any = "absent"
) -> list[str]:
  """ "<leaf>: checkpoint <saved> vs <wanted_by> <wanted>" for each leaf whose entry differs
  (shapes, dtypes), in name order; a leaf on one side only shows `absent` on the other."""
  return [
    f"{name}: checkpoint {saved.get(name, absent)} vs {wanted_by} {wanted.get(name, absent)}"
    for name in sorted(set(saved) | set(wanted))
    if saved.get(name) != wanted.get(name)
  ]


def _shapes_of_target(target: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  return {
    _leaf_name(path): (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
    for path, leaf in jax.tree_util.tree_leaves_with_path(target)
  }


class Checkpointer:
  """Saves/restores {"state": TrainState, "data": iterator state (JSON)} under `directory`."""

  def __init__(
    self,
    directory: str,
    max_to_keep: int = 3,
    async_save: bool = True,
    read_only: bool = False,
    run_record: RunRecord | None = None,
  ):
    """`read_only` opens another run's checkpoints (a fine-tune's pretraining): nothing is
    created, moved or cleaned up there. `run_record` is saved with every step and compared on
    restore."""
    self.directory = os.path.abspath(directory)
    self.read_only = read_only
    self.run_record = run_record
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
    self._pending_step: int | None = None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  # --- Saving ----------------------------------------------------------------------------------

  def save(self, step: int, state: Any, data_state: dict[str, Any]) -> None:
    """Starts saving (asynchronously: the copy to host happens before this returns). A failed
    write (disk full, permissions) is a CheckpointError naming the directory; Orbax's
    temporary-directory protocol leaves the previous checkpoints intact."""
    data = dict(data_state)
    if self.run_record is not None:
      data[RUN_KEY] = self.run_record.saved()
    with self._writing(step):
      self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data)),
        force=True,
      )
    self._pending_step = step

  @contextlib.contextmanager
  def _writing(self, step: int | None):
    try:
      yield
    except Exception as error:
      cause = _file_system_error(error)
      if cause is None:
        raise  # not the disk: a bug keeps its traceback
      intact = [s for s in self.all_steps() if s != step]
      kept = f"the intact checkpoints are steps {intact}" if intact else "no checkpoint is intact"
      raise CheckpointError(
        f"Could not write the checkpoint of step {step} to {self.directory}: {_reason(cause)}. "
        f"{kept.capitalize()}; free disk space or fix the permissions, then re-run the same "
        "command to resume."
      ) from error

  def wait(self) -> None:
    """Blocks until the last save is on disk (its failure surfaces here)."""
    with self._writing(self._pending_step):
      self.manager.wait_until_finished()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self.manager.close()

  # --- Restoring -------------------------------------------------------------------------------

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _check_structure(self, step: int, target: Any) -> None:
    """Compares the saved tree's leaf names and shapes with `target`'s: a difference is a
    CheckpointMismatchError; unreadable metadata is damage."""
    try:
      with _quiet_asyncio():
        handler = ocp.StandardCheckpointHandler()
        saved_tree = handler.metadata(epath.Path(self._step_dir(step)) / "state")
    except Exception as error:  # noqa: BLE001  (any unreadable metadata is damage)
      raise DamagedCheckpointError(step, f"unreadable metadata: {_reason(error)}") from error
    if saved_tree is None:
      raise DamagedCheckpointError(step, "its tree metadata is missing or unreadable")
    saved = {
      leaf.name: (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
      for leaf in jax.tree.leaves(saved_tree)
      if hasattr(leaf, "name")
    }
    wanted = _shapes_of_target(target)
    differences = leaf_differences(saved, wanted, "config")
    if differences:
      raise CheckpointMismatchError(
        f"The checkpoint of step {step} in {self.directory} does not match the state this "
        f"config builds (a changed model, task or optimizer?): {len(differences)} "
        f"differences, e.g. {differences[:3]}. Use a fresh workdir, or the config the "
        "checkpoint was written with."
      )

  def _check_record(self, step: int, record: dict[str, Any] | None) -> None:
    if record is None or self.run_record is None:
      return  # written before run records existed
    differences = self.run_record.differences(record)
    if differences:
      listed = list_changes(differences)
      raise CheckpointMismatchError(
        f"The checkpoint of step {step} in {self.directory} was written by a different "
        f"config: {listed}. Use a fresh workdir, or the config the checkpoint was written with."
      )

  def restore(self, step: int, target: Any) -> tuple[Any, dict[str, Any]]:
    """Restores step `step` into arrays with `target`'s shapes, dtypes and shardings.

    Raises CheckpointMismatchError for a genuine difference, DamagedCheckpointError for a
    step that cannot be read."""
    if not os.path.isdir(self._step_dir(step)):
      raise DamagedCheckpointError(step, f"{self._step_dir(step)} is gone")
    self._check_structure(step, target)
    with _quiet_asyncio():
      try:
        data = self.manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))
        data = dict(data["data"])
      except Exception as error:  # noqa: BLE001
        raise DamagedCheckpointError(step, f"its data item: {_reason(error)}") from error
      self._check_record(step, data.pop(RUN_KEY, None))
      abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), target
      )
      try:
        restored = self.manager.restore(
          step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
      except Exception as error:  # noqa: BLE001  (the structure matched: the files are bad)
        raise DamagedCheckpointError(step, f"its arrays: {_reason(error)}") from error
    return restored["state"], data

  def restore_latest(self, target: Any) -> tuple[int, Any, dict[str, Any]] | None:
    """(step, state, data) of the newest intact step, or None when there is no checkpoint.

    Each damaged step on the way is moved to `damaged/` (unless read-only) with a message
    naming it and the steps lost; all of them damaged is a CheckpointError."""
    damaged: list[DamagedCheckpointError] = []
    for step in reversed(self.all_steps()):
      try:
        state, data = self.restore(step, target)
      except DamagedCheckpointError as error:
        damaged.append(error)
        self._set_aside(step)
        continue
      if damaged:
        self._report_fallback(damaged, step)
      return step, state, data
    if damaged:
      raise CheckpointError(self._all_damaged_message(damaged))
    return None

  def restore_latest_arrays(self) -> tuple[int, dict[str, Any]]:
    """(step, train state as saved) of the newest readable step, without a target: what a
    fine-tune reads from its pretraining run. Damaged steps are skipped with a message."""
    damaged: list[DamagedCheckpointError] = []
    for step in reversed(self.all_steps()):
      try:
        with _quiet_asyncio():
          restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(self._local_target(step)))
          )
        state = jax.tree.map(np.asarray, dict(restored["state"]))
      except Exception as error:  # noqa: BLE001
        damaged.append(DamagedCheckpointError(step, _reason(error)))
        self._set_aside(step)
        continue
      if damaged:
        self._report_fallback(damaged, step)
      return step, state
    if damaged:
      raise CheckpointError(self._all_damaged_message(damaged))
    raise CheckpointError(f"There is no checkpoint under {self.directory}.")

  def _local_target(self, step: int) -> Any:
    """The saved tree as abstract arrays on this process's first device: a run saved over 8
    devices (or another host's) restores here, whatever this machine's topology."""
    with _quiet_asyncio():
      saved = ocp.StandardCheckpointHandler().metadata(epath.Path(self._step_dir(step)) / "state")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
      lambda leaf: (
        jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype, sharding=device)
        if hasattr(leaf, "shape")
        else leaf
      ),
      saved,
    )

  def _set_aside(self, step: int) -> None:
    """Moves a damaged step out of Orbax's sight (process 0; never in a read-only directory)."""
    if self.read_only or jax.process_index() != 0:
      return
    aside = os.path.join(self.directory, DAMAGED_DIR)
    os.makedirs(aside, exist_ok=True)
    target, n = os.path.join(aside, str(step)), 1
    while os.path.exists(target):
      target, n = os.path.join(aside, f"{step}.{n}"), n + 1
    os.rename(self._step_dir(step), target)
    self.manager.reload()

  def _report_fallback(self, damaged: list[DamagedCheckpointError], step: int) -> None:
    newest = damaged[0].step
    where = (
      "left in place (read-only)"
      if self.read_only
      else f"moved to {os.path.join(self.directory, DAMAGED_DIR)}"
    )
    for error in damaged:
      print(f"Warning: {error} in {self.directory}; {where}.", flush=True)
    print(
      f"Warning: using the newest intact checkpoint, step {step}: {newest - step} steps "
      f"after it are lost and will be trained again.",
      flush=True,
    )

  def _all_damaged_message(self, damaged: list[DamagedCheckpointError]) -> str:
    steps = [error.step for error in damaged]
    where = "" if self.read_only else f" (moved to {os.path.join(self.directory, DAMAGED_DIR)})"
    return (
      f"Every checkpoint in {self.directory} is damaged: steps {steps}{where}; first: "
      f"{damaged[0].reason}. Re-run to train from step 0, or restore the directory from a copy."
    )
