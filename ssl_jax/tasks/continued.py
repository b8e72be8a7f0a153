"""Continued pretraining: a run whose `config.init_from` names a finished run or a Hugging Face
model directory starts its own task from those weights, as a new run in its own workdir.

  python -m ssl_jax.main --config configs/bert_python_text.py --workdir /tmp/dapt \\
    --config.init_from=/models/bert-base-uncased \\
    --config.data.tokenizer_path=/models/bert-base-uncased

The model is the source's: `config.model` and the options that fix its shapes come from the
source (its config.json), and only options that keep the shapes (dropout, dtype, remat, the
attention kernel) may be set anew. Every parameter whose path and shape agree is copied, so
the encoder and, when the task's head has the source's layout (MLM after BERT's pretraining),
the head carry over; a head of another shape starts fresh. Position tables are resized: a
longer run (BERT's 128 -> 512 phase) keeps the learned rows and fills the new ones by repeating
them (Longformer's copy initialisation), a shorter one keeps the first rows. Rotary positions
need nothing. Every leaf of the source's encoder must land, else the run is refused."""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from ssl_jax.errors import CheckpointMismatchError
from ssl_jax.registry import MODELS
from ssl_jax.runs.finished import load_finished_run, source_model_options
from ssl_jax.tasks.pretrained_weights import place_like

# Model options a continued run may change: they leave every parameter's shape as it was.
SHAPE_FREE_OPTIONS = ("dropout_rate", "dtype", "remat", "attention_impl")
POSITION_TABLES = ("position_embed",)


def continued_model(config: ml_collections.ConfigDict) -> None:
  """Sets `config.model` and `config.model_kwargs` to the source's model (in place), keeping
  this config's shape-free options that differ from the model's defaults. Positions: at least
  the run's row length (`config.data.seq_len`)."""
  model, options = source_model_options(config.init_from)
  mine = config.model_kwargs.to_dict() if config.model == model else {}
  defaults = MODELS.option_defaults(model) if model in MODELS else {}
  for key in SHAPE_FREE_OPTIONS:
    if key in mine and key in defaults and mine[key] != defaults[key]:
      options[key] = mine[key]
  seq_len = config.data.get("seq_len")
  if "max_length" in options and isinstance(seq_len, int) and seq_len > options["max_length"]:
    options["max_length"] = seq_len
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict(options)


def resized_positions(table: np.ndarray, length: int) -> np.ndarray:
  """A [L, D] position table as [length, D]: its first rows, then its rows repeated."""
  reps = -(-length // table.shape[0])
  return np.concatenate([table] * reps, axis=0)[:length]


def transplanted(source: Any, fresh: Any, encoder_paths: set[str]) -> tuple[Any, list[str]]:
  """`fresh` with every leaf of `source` at the same path copied (position tables resized),
  and the paths that stayed fresh. A source encoder leaf that cannot land is an error."""
  have = {
    jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_leaves_with_path(source)
  }
  kept, problems = [], []

  def take(path, leaf):
    name = jax.tree_util.keystr(path)
    value = have.get(name)
    if value is not None and value.shape == leaf.shape:
      return value
    if value is not None and name.endswith(tuple(f"['{t}']" for t in POSITION_TABLES)):
      return resized_positions(value, leaf.shape[0])
    if value is not None and name in encoder_paths:
      problems.append(f"{name}: {value.shape} -> {leaf.shape}")
    kept.append(name)
    return np.asarray(leaf)

  merged = jax.tree_util.tree_map_with_path(take, jax.device_get(fresh))
  landed = set(have) - set(kept)
  missing = sorted(p for p in encoder_paths if p not in landed)
  if problems or missing:
    raise CheckpointMismatchError(
      "config.init_from's encoder does not fit this run's model "
      f"({len(problems) + len(missing)} differences, e.g. {(problems + missing)[:3]})."
    )
  return merged, kept


def continue_from(
  config: ml_collections.ConfigDict, dataset: Any, params: Any, model_state: Any
) -> tuple[Any, Any]:
  """The fresh (sharded) params and model state with `config.init_from`'s weights in."""
  source = load_finished_run(config.init_from, dataset, requires=())
  encoder_paths = _encoder_paths(source.task, source.variables)
  merged, kept = transplanted(source.variables["params"], params, encoder_paths)
  state, _ = transplanted(source.variables["model_state"], model_state, set())
  print(
    f"init_from: weights of {config.init_from} (step {source.step}); "
    f"{len(kept)} parameter arrays start fresh{': ' + ', '.join(kept[:6]) if kept else ''}.",
    flush=True,
  )
  return place_like(merged, params), place_like(state, model_state)


def _encoder_paths(task: Any, variables: dict[str, Any]) -> set[str]:
  """Key paths of the encoder's parameters inside the task's params: the task's own split,
  marked and merged back."""
  encoder, rest = task.split_encoder(variables["params"], variables["model_state"])
  marked, _ = task.merge_encoder(
    jax.tree.map(lambda _: True, encoder), jax.tree.map(lambda _: False, rest)
  )
  return {jax.tree_util.keystr(p) for p, v in jax.tree_util.tree_leaves_with_path(marked) if v}
