"""<workdir>/config.json and the resume contract.

config.json holds the resolved config as run, what the data decided ("dataset_info": vocabulary
size, tokenizer, classes, row shapes) and, under "history", each allowed change made when the
run was resumed. Re-running a command on a workdir with checkpoints resumes it; the contract
says what may differ from the config.json already there:

  - may change (recorded in "history"): `evals` (evaluators and their options and intervals),
    `log_every`, `checkpoint_every`, `keep_checkpoints`, `eval_batch_size`, `mesh` (the same
    run on other devices), and `total_steps` when nothing depends on it (a constant schedule
    with its warmup unchanged, no weight-decay ramp, a task without total_steps schedules);
  - everything else (task, model, data, tokenizer, label budget, augmentation, batch size, seed,
    optimizer, schedule, early stopping) defines the run: a change is a ResumeError listing
    each changed key as old -> new, raised before any file is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from ssl_jax.errors import ResumeError, WorkdirError
from ssl_jax.files import write_json

# A recorded config (a dict) with the defaults of options added to ssl_jax since it was
# written, so an upgrade does not look like a changed setting. The schema knows them: the
# trainer passes `config_base.with_new_defaults`; this package knows no schema.
FillDefaults = Callable[[dict[str, Any]], dict[str, Any]]

CONFIG_FILE = "config.json"
DATASET_INFO = "dataset_info"
HISTORY = "history"
# Top-level keys whose change keeps the trained trajectory: see the module docstring.
CHANGEABLE_ON_RESUME = (
  "evals",
  "log_every",
  "checkpoint_every",
  "keep_checkpoints",
  "eval_batch_size",
  "mesh",
)
TOTAL_STEPS = "total_steps"
# dataset_info key with the per-example shape and dtype of each field of the training rows, so
# a task can be rebuilt without reading its data (a fine-tune rebuilding its pretraining).
TRAIN_FIELDS = "train_fields"
# dataset_info facts a checkpoint depends on: a change means the data is not the data trained on.
DATA_FACTS = ("vocab_size", "text_vocab_size", "num_classes", "class_names", "extra_ids")


def config_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as plain JSON values (what config.json records)."""
  return json.loads(config.to_json_best_effort())


def defining_part(config: dict[str, Any]) -> dict[str, Any]:
  """The keys of a config dict that define the trained trajectory (all but the changeable)."""
  return {
    key: value
    for key, value in config.items()
    if key not in CHANGEABLE_ON_RESUME + (TOTAL_STEPS, DATASET_INFO, HISTORY)
  }


@dataclasses.dataclass(frozen=True)
class RunRecord:
  """The run-defining part of a config and its fingerprint: saved with every checkpoint and
  compared on restore. `fill_defaults` completes a saved record written by an older ssl_jax."""

  fingerprint: str
  config: dict[str, Any]
  fill_defaults: FillDefaults = dict

  @classmethod
  def of(cls, config: ml_collections.ConfigDict, fill_defaults: FillDefaults) -> RunRecord:
    defining = defining_part(config_dict(config))
    canonical = json.dumps(defining, sort_keys=True, default=str)
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return cls(fingerprint, defining, fill_defaults)

  def saved(self) -> dict[str, Any]:
    """{"fingerprint", "config"}: what a checkpoint stores."""
    return {"fingerprint": self.fingerprint, "config": self.config}

  def differences(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The run-defining differences between a checkpoint's saved record and this one (none
    when only the fingerprint differs because options were added to ssl_jax since)."""
    if saved.get("fingerprint") == self.fingerprint:
      return {}
    old = defining_part(self.fill_defaults(dict(saved.get("config", {}))))
    return changed_keys(old, self.config)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict) and tree:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
      flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat
  return {prefix: tree}


_ABSENT = "(absent)"


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
  """{dotted key: (old, new)} for every leaf that differs (absent on one side included)."""
  flat_old, flat_new = _flatten(old), _flatten(new)
  return {
    key: (flat_old.get(key, _ABSENT), flat_new.get(key, _ABSENT))
    for key in sorted(set(flat_old) | set(flat_new))
    if flat_old.get(key, _ABSENT) != flat_new.get(key, _ABSENT)
  }


# Shown first: a different part explains the many option differences that follow from it.
_NAMES_FIRST = ("task", "model", "data.name")


def list_changes(changes: dict[str, tuple[Any, Any]], limit: int = 8) -> str:
  """ "key old -> new, ..." with the part names first, at most `limit` keys."""
  ordered = sorted(changes, key=lambda key: (key not in _NAMES_FIRST, key))
  shown = ", ".join(f"{key} {changes[key][0]!r} -> {changes[key][1]!r}" for key in ordered[:limit])
  more = len(ordered) - limit
  return shown + (f" and {more} more" if more > 0 else "")


def read_run_config(workdir: str) -> dict[str, Any] | None:
  """The workdir's config.json, or None if there is none."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise WorkdirError(
      f"{path} cannot be read ({error}); restore it from a copy, or use a fresh workdir."
    ) from error


def total_steps_free(config: ml_collections.ConfigDict, task_class: type, old: int) -> bool:
  """Whether `total_steps` can change from `old` without changing any step already taken or
  still to come under the old value (see the module docstring)."""
  optim = config.optim
  warmup = int(optim.warmup_steps)
  return (
    optim.schedule == "constant"
    and int(config.total_steps) >= old  # shorter than trained: nothing to resume
    and min(warmup, old) == min(warmup, int(config.total_steps))
    and float(optim.weight_decay_end) < 0
    and not task_class.schedules_use_total_steps()
  )


def check_resume(
  previous: dict[str, Any],
  config: ml_collections.ConfigDict,
  task_class: type,
  fill_defaults: FillDefaults,
) -> dict[str, tuple[Any, Any]]:
  """The allowed changes ({dotted key: (old, new)}) between a workdir's config.json and
  `config`; a ResumeError listing every run-defining change."""
  current = config_dict(config)
  previous = fill_defaults({k: v for k, v in previous.items() if k not in (DATASET_INFO, HISTORY)})
  changes = changed_keys(previous, current)
  old_total = previous.get(TOTAL_STEPS, current[TOTAL_STEPS])
  refused = {
    key: change
    for key, change in changes.items()
    if key.split(".")[0] not in CHANGEABLE_ON_RESUME
    and not (key == TOTAL_STEPS and total_steps_free(config, task_class, int(old_total)))
  }
  if refused:
    listed = list_changes(refused)
    hint = (
      " (total_steps can only grow, with optim.schedule='constant', its warmup unchanged, no "
      "weight-decay ramp and a task without step-dependent schedules)"
      if TOTAL_STEPS in refused
      else ""
    )
    raise ResumeError(
      f"The workdir holds checkpoints of a run with other settings: {listed}{hint}. Re-run "
      "with the settings in its config.json to resume it, or use a fresh workdir. Settings "
      f"that may change on resume: {list(CHANGEABLE_ON_RESUME)} and total_steps as noted."
    )
  return changes


def check_data_facts(previous: dict[str, Any], info: dict[str, Any]) -> None:
  """The data built now against the one the checkpoints were trained on (vocabulary, classes)."""
  recorded = previous.get(DATASET_INFO) or {}
  now = json.loads(json.dumps(dataset_info_record(info), default=str))
  differences = {
    key: (recorded[key], now.get(key, _ABSENT))
    for key in DATA_FACTS
    if key in recorded and recorded[key] != now.get(key, _ABSENT)
  }
  if differences:
    listed = ", ".join(f"{key} {a!r} -> {b!r}" for key, (a, b) in differences.items())
    raise ResumeError(
      f"The data differs from the data the workdir's checkpoints were trained on: {listed}. "
      "Point config.data at the same files (and tokenizer), or use a fresh workdir."
    )


def dataset_info(dataset: Any) -> dict[str, Any]:
  """What config.json records of the data: its info, plus each training field's per-example
  shape and dtype (so a fine-tune can rebuild this run's task without its data)."""
  train = dataset.split(dataset.train_split)
  fields = {
    key: [list(value.shape[1:]), str(np.dtype(value.dtype))] for key, value in train.items()
  }
  return {**dataset.info, TRAIN_FIELDS: fields}


def finished_results(workdir: str, changes: dict[str, Any], latest: int | None) -> dict | None:
  """The results.json of a run that finished at its latest checkpoint, when neither its
  evaluators nor its length changed since (None: there is work to do)."""
  path = os.path.join(workdir, "results.json")
  if (
    latest is None
    or not os.path.isfile(path)
    or any(key == "total_steps" or key.startswith("evals") for key in changes)
  ):
    return None
  with open(path) as f:
    results = json.load(f)
  return results if results.get("step") == latest else None


def dataset_info_record(info: dict[str, Any]) -> dict[str, Any]:
  """Scalars, names and id tables of a dataset's info; per-token arrays (word_start) are left
  out."""
  return {
    key: value
    for key, value in info.items()
    if isinstance(value, (int, float, str, tuple, list, dict)) and not isinstance(value, np.ndarray)
  }


def write_run_config(
  workdir: str,
  config: ml_collections.ConfigDict,
  info: dict[str, Any],
  previous: dict[str, Any] | None = None,
  changes: dict[str, tuple[Any, Any]] | None = None,
  step: int = 0,
) -> None:
  """Writes config.json atomically: the config as run now, its dataset_info, and the history
  of `previous` plus an entry for `changes` made when resuming at `step`."""
  if jax.process_index() != 0:
    return
  written = config_dict(config)
  written[DATASET_INFO] = dataset_info_record(info)
  history = list((previous or {}).get(HISTORY, []))
  if changes:
    history.append(
      {
        "resumed_at_step": int(step),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "changes": {key: [a, b] for key, (a, b) in changes.items()},
      }
    )
  if history:
    written[HISTORY] = history
  write_json(os.path.join(workdir, CONFIG_FILE), written)
