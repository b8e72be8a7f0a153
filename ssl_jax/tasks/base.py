"""The contract between a task and the trainer: init, the loss, the after-update hook, the
optimizer wrapper, pretrained weights in and trained weights out."""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax import models as _models  # noqa: F401  (registers the models)
from ssl_jax.data.source import Dataset
from ssl_jax.registry import MODELS, ConfigError, Registry

PyTree = Any
Metrics = dict[str, jax.Array]


class Task(abc.ABC):
  """A model bundled with its pretext loss (scenic-style), built from the config by name.

  Subclasses are registered with `@TASKS.register(name)` and constructed as
  `Task(config, dataset, **config.task_kwargs)`. Everything the train step needs arrives as
  arguments, so all methods are pure and jit-able. What else a task can do (give features,
  expose its encoder, predict tokens, classify...) it declares by inheriting the interfaces of
  `ssl_jax.capabilities`; evaluators and fine-tuning use only those.
  """

  modality: str = "image"
  # Options of `config.task_kwargs` that are nested blocks {"name": ..., options...} naming a
  # part in a registry: option -> (registry, default part name). The resolved config holds
  # each block with its part's option defaults.
  # Special tokens (roles of `ssl_jax.data.tokenizer_base`) the task needs of a tokenizer,
  # checked before any data is read (e.g. ("mask",) for masked language modelling).
  token_roles: ClassVar[tuple[str, ...]] = ()
  nested_parts: ClassVar[dict[str, tuple[Registry, str]]] = {}
  # Options that map names of parts in a registry to their option blocks, several at once
  # ({"shortest_path": {"weight": 1.0}, ...}): option -> (registry, extra options every block
  # takes with their defaults). The resolved config fills each block's option defaults.
  nested_part_maps: ClassVar[dict[str, tuple[Registry, dict[str, Any]]]] = {}

  @classmethod
  def schedules_use_total_steps(cls) -> bool:
    """Whether the loss or update reads config.total_steps (a momentum or temperature
    schedule): then total_steps cannot change when the run is resumed (runs/record.py)."""
    return False

  def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset):
    if dataset.modality != self.modality:
      raise ConfigError(
        f"Task {config.task!r} needs {self.modality} data, but dataset "
        f"{config.data.name!r} is {dataset.modality} data."
      )
    self.config = config
    self.dataset = dataset

  @abc.abstractmethod
  def init(self, rng: jax.Array, batch: dict[str, jax.Array]) -> tuple[PyTree, PyTree]:
    """Returns (params, model_state) for an example batch; model_state holds e.g. batch stats."""

  @abc.abstractmethod
  def loss_fn(
    self,
    params: PyTree,
    model_state: PyTree,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    step: jax.Array,
  ) -> tuple[jax.Array, tuple[Metrics, PyTree]]:
    """Returns (loss, (metrics, new_model_state)) for one global batch at train step `step`
    (0-based, a traced int32: schedules inside a loss read it, nothing counts on its own)."""

  def after_update(
    self, params: PyTree, model_state: PyTree, step: jax.Array
  ) -> tuple[PyTree, PyTree]:
    """Called in the train step after the optimizer update of step `step` (0-based) with the
    updated params: returns (params, model_state), e.g. momentum targets moved towards the
    online weights, or params projected back onto a constraint (normalised prototypes).
    Default: both unchanged."""
    del step
    return params, model_state

  def wrap_optimizer(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """The optimizer the trainer uses, from the one `config.optim` builds: a fine-tuning task
    freezes parameters or scales learning rates here. Default: unchanged."""
    return tx

  def load_pretrained(self, params: PyTree, model_state: PyTree) -> tuple[PyTree, PyTree]:
    """Called once on the freshly initialised (sharded) params and model state, before any
    checkpoint of this run is restored: a fine-tuning task puts pretrained weights (and batch
    statistics) in. Default: unchanged."""
    return params, model_state

  def export(self, params: PyTree, directory: str) -> dict[str, Any] | None:
    """Called after training with the final params: writes what the run has to ship
    beyond its pretraining (fine-tunes: the trained weights only) under `directory` and
    returns a summary for results.json. Default: nothing."""
    del params, directory
    return None


def build_model(config: ml_collections.ConfigDict, **derived: Any) -> nn.Module:
  """Builds `config.model` with `config.model_kwargs`, filling in facts the data determines.

  `derived` (e.g. vocab_size from the tokenizer) is used unless the config sets it explicitly.
  """
  options = {**derived, **config.model_kwargs.to_dict()}
  return MODELS.build(config.model, options)


def require_columns(
  config: ml_collections.ConfigDict, dataset: Dataset, columns: tuple[str, ...], sources: str
) -> None:
  """A ConfigError naming the missing columns when the train split lacks any of `columns`
  (`sources`: the data names that provide them)."""
  train = dataset.split(dataset.train_split)
  missing = [key for key in columns if key not in train]
  if missing:
    raise ConfigError(
      f"task {config.task!r} needs rows with {list(columns)}; dataset {config.data.name!r} "
      f"lacks {missing}. Use data.name {sources}."
    )


def split_variables(variables: PyTree) -> tuple[PyTree, PyTree]:
  """{'params': p, **rest} -> (p, rest)."""
  variables = dict(variables)
  params = variables.pop("params")
  return params, variables


def mean_over_valid(hidden: jax.Array, valid: jax.Array) -> jax.Array:
  """[B, L, D] hidden states averaged over the real tokens of each row -> [B, D]."""
  weights = valid[..., None].astype(hidden.dtype)
  return (hidden * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)


def without_key(tree: dict[str, Any], key: str) -> dict[str, Any]:
  """`tree` without its entry `key` (a shallow copy)."""
  return {k: v for k, v in tree.items() if k != key}
