"""The default config every experiment starts from, and the checks that run before any work.

Config files in `configs/` call `base_config()` and override fields; `validate_config` then
rejects unknown keys, unknown registry names, options a part does not accept and missing files,
each with a message naming the bad value and the valid choices.
"""

from __future__ import annotations

import os

import ml_collections

from ssl_jax import early_stopping
from ssl_jax.registry import DATASETS, EVALUATORS, MODELS, TASKS, ConfigError, check_options


def base_config() -> ml_collections.ConfigDict:
  """All top-level keys with defaults; a config may only set keys that exist here."""
  config = ml_collections.ConfigDict()
  config.task = "simclr"
  config.task_kwargs = ml_collections.ConfigDict()
  config.model = "resnet"
  config.model_kwargs = ml_collections.ConfigDict()
  config.data = ml_collections.ConfigDict({"name": "digits"})
  # Few-label training (ssl_jax/data/label_budget.py): keep per_class labels of each class
  # (0 = all), chosen by draw; "drop" the rest or "pair" them, unlabelled, with labelled rows.
  config.label_budget = ml_collections.ConfigDict(dict(per_class=0, draw=0, unlabelled="drop"))
  # Image tasks: data.augment.view_configs; text tasks: data.text_augment.TextAugmentConfig.
  config.augment = ml_collections.ConfigDict()
  # Train a linear classifier on detached encoder features in the same step (solo-learn's
  # online probe); its loss and accuracy are logged with the training metrics.
  config.online_probe = False
  config.optim = ml_collections.ConfigDict(
    dict(
      name="adamw",  # adamw | sgd | lars
      learning_rate=1e-3,  # peak, before lr_scaling
      lr_scaling="none",  # none | linear | sqrt (relative to batch 256)
      schedule="cosine",  # cosine | constant (after warmup)
      warmup_steps=0,
      end_lr_factor=0.0,  # cosine decays to end_lr_factor * peak
      weight_decay=0.0,  # never applied to biases and norm parameters
      weight_decay_end=-1.0,  # >= 0: cosine ramp from weight_decay to this (DINO: 0.04 -> 0.4)
      clip_norm=0.0,  # global-norm gradient clipping; 0 disables
      b1=0.9,
      b2=0.999,
      eps=1e-8,  # adamw
      momentum=0.9,
      nesterov=False,  # sgd, lars
      trust_coefficient=0.001,  # lars
    )
  )
  config.evals = ml_collections.ConfigDict()  # evaluator name -> its options
  # Validate during training, keep the best state, stop without improvement
  # (ssl_jax/early_stopping.py); every=0 disables it.
  config.early_stopping = early_stopping.defaults()
  config.total_steps = 1000
  config.batch_size = 256  # global, over all devices and processes
  config.seed = 0
  config.log_every = 50
  config.checkpoint_every = 500
  config.keep_checkpoints = 3
  config.eval_batch_size = 512
  config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})
  return config


_SECTION_KEYS = ("optim", "mesh", "label_budget", "early_stopping")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for anything that would fail later, before any expensive work."""
  base = base_config()
  check_options("the config", config.keys(), base.keys(), where="config")
  for section in _SECTION_KEYS:
    check_options(f"config.{section}", config[section].keys(), base[section].keys())
  if "name" not in config.data:
    raise ConfigError(f"config.data needs a 'name'; valid dataset names: {DATASETS.names()}.")
  data_options = {k: v for k, v in config.data.items() if k != "name"}
  DATASETS.validate(config.data.name, data_options, num_positional=1, where="config.data")
  TASKS.validate(config.task, config.task_kwargs, num_positional=2, where="config.task_kwargs")
  MODELS.validate(config.model, config.model_kwargs, where="config.model_kwargs")
  early_stopping.validate(config.early_stopping)
  for name, options in config.evals.items():
    EVALUATORS.validate(name, options, num_positional=1, where=f"config.evals.{name}")
  if "online_probe" in config.evals and not config.online_probe:
    raise ConfigError(
      "config.evals.online_probe reads the probe trained during the run; set "
      "config.online_probe=True as well."
    )
  for key, value in data_options.items():
    is_path = (
      key in ("path", "data_dir")
      or key.endswith(("_path", "_dir"))
      and key not in ("train_dir", "test_dir")
    )
    if (
      is_path and value and isinstance(value, str) and not os.path.exists(os.path.expanduser(value))
    ):
      raise ConfigError(f"config.data.{key}={value!r} does not exist.")
  for key in ("batch_size", "log_every", "checkpoint_every", "eval_batch_size", "keep_checkpoints"):
    if int(config[key]) <= 0:
      raise ConfigError(f"config.{key} must be positive, got {config[key]!r}.")
  if int(config.total_steps) < 0:
    # 0 evaluates the initial (e.g. pretrained, or zero-shot) model without a step.
    raise ConfigError(f"config.total_steps must be >= 0, got {config.total_steps!r}.")
