"""The default config every experiment starts from, and the checks that run before any work.

Config files in `configs/` call `base_config()` and override fields; `resolve_defaults` fills
in every option of every part the config names (its part slots, `trainer_slots`: data, task,
the task's part blocks, model, evaluators) with its default, so each can be set from the
command line and config.json records it;
`validate_config` then rejects unknown keys, unknown registry names, options a part does not
accept, task/evaluator pairings that cannot work and missing files, each with a message naming
the bad value and the valid choices.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from ssl_jax import early_stopping, part_slots
from ssl_jax.capabilities import OnlineProbe, describe_missing, missing_capabilities
from ssl_jax.data.tokenizer import is_tokenizer_source, load_tokenizer
from ssl_jax.data.validation_split import VALIDATION
from ssl_jax.optim import LR_SCALINGS, OPTIMIZERS, SCHEDULES
from ssl_jax.part_slots import BLOCK, MAP, PAIR, Slot
from ssl_jax.registry import (
  DATASETS,
  EVALUATORS,
  MODELS,
  TASKS,
  ConfigError,
  check_options,
)
from ssl_jax.runs.finished import check_source
from ssl_jax.runs.model_dir import is_model_directory
from ssl_jax.runs.model_source import check_tokenizer
from ssl_jax.tasks.continued import continued_model
from ssl_jax.value_checks import Range, check_values


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
  config.label_budget = ml_collections.ConfigDict(
    dict(per_class=0, draw=0, unlabelled="drop", indices=(), labels=())
  )
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
  # A finished run's workdir or a Hugging Face model directory this run continues from: its
  # model and weights (ssl_jax/tasks/continued.py). Fine-tuning tasks name theirs in
  # task_kwargs.init_from instead.
  config.init_from = ""
  config.log_every = 50
  config.checkpoint_every = 500
  config.keep_checkpoints = 3
  config.eval_batch_size = 512
  config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})
  return config


_SECTION_KEYS = ("optim", "mesh", "label_budget", "early_stopping")
# Every evaluator's extra option: evaluate every N steps during training (0 = only at the end).
EVERY = "every"

# The parts a trainer config names, in the order they are checked (the task's own part
# blocks follow the task: `task_slots`).
DATA_SLOT = Slot("", "data", DATASETS, BLOCK, num_positional=1)
TASK_SLOT = Slot("", "task", TASKS, PAIR, num_positional=2)
MODEL_SLOT = Slot("", "model", MODELS, PAIR)
EVALS_SLOT = Slot(
  "", "evals", EVALUATORS, MAP, num_positional=1, extras={EVERY: 0}, extra_ranges={EVERY: Range(0)}
)


def task_slots(task_class: type) -> list[Slot]:
  """The part blocks a task class declares in its options (`Task.nested_parts`, a PEFT method
  or an estimator) and its name -> options maps (`Task.nested_part_maps`, rewards)."""
  blocks = [
    Slot("task_kwargs", key, registry, BLOCK, default_name=name, paired_by_modality=True)
    for key, (registry, name) in task_class.nested_parts.items()
  ]
  maps = [
    Slot("task_kwargs", key, registry, MAP, num_positional=1, extras=extras)
    for key, (registry, extras) in task_class.nested_part_maps.items()
  ]
  return blocks + maps


def trainer_slots(config: ml_collections.ConfigDict) -> list[Slot]:
  """Every part slot of a trainer config (the task's own only once the task name is known)."""
  nested = task_slots(TASKS.get(config.task)) if config.get("task") in TASKS else []
  return [DATA_SLOT, TASK_SLOT, *nested, MODEL_SLOT, EVALS_SLOT]


def resolve_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Fills `config` in place with the default of every option of every part it names, and
  returns it. Unknown names are left for `validate_config` to report."""
  if config.get("init_from") and _source_exists(config.init_from):
    continued_model(config)
  part_slots.fill_defaults(config, trainer_slots(config))
  return config


def _source_exists(path: str) -> bool:
  """init_from names something readable (else `validate_config` says what is wrong)."""
  return os.path.exists(path)


def with_new_defaults(recorded: dict[str, Any]) -> dict[str, Any]:
  """A recorded config (config.json, a checkpoint's run record) with the defaults of options
  it lacks (options added to ssl_jax since the run was written), so upgrading ssl_jax does not
  look like a changed setting. The trainer hands this to `ssl_jax.runs`, which knows no
  schema."""
  filled = base_config()
  try:
    with filled.unlocked():
      for key, value in recorded.items():
        if isinstance(value, dict) and isinstance(filled.get(key), ml_collections.ConfigDict):
          for inner, inner_value in value.items():
            filled[key][inner] = inner_value
        else:
          filled[key] = value
    resolve_defaults(filled)
  except (TypeError, ValueError, KeyError, AttributeError):
    return recorded  # not a config this version can read: compare it as written
  return json.loads(filled.to_json_best_effort())


def evaluator_options(options: ml_collections.ConfigDict | dict[str, Any]) -> dict[str, Any]:
  """An evaluator's options as its function takes them (without `every`)."""
  options = options.to_dict() if isinstance(options, ml_collections.ConfigDict) else dict(options)
  options.pop(EVERY, None)
  return options


def check_pairing(config: ml_collections.ConfigDict) -> None:
  """Every evaluator (and config.online_probe) against the capabilities the task class
  declares: a ConfigError naming the evaluator, the task, the missing capability and the tasks
  that have it."""
  task_class = TASKS.get(config.task)
  used = [(f"Evaluator {name!r}", name, options) for name, options in config.evals.items()]
  stopping = config.get("early_stopping", early_stopping.defaults())
  if int(stopping.every):
    used.append(
      (f"Early stopping's evaluator {stopping.evaluator!r}", stopping.evaluator, stopping.options)
    )
  for what, name, options in used:
    missing = missing_capabilities(task_class, EVALUATORS.requirements(name))
    if missing:
      raise ConfigError(describe_missing(what, config.task, missing))
    EVALUATORS.check_pairing(name, evaluator_options(options), task_class)
  if config.online_probe and not issubclass(task_class, OnlineProbe):
    raise ConfigError(describe_missing("config.online_probe=True", config.task, [OnlineProbe]))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for anything that would fail later, before any expensive work."""
  base = base_config()
  check_options("the config", config.keys(), base.keys(), where="config")
  for section in _SECTION_KEYS:
    check_options(f"config.{section}", config[section].keys(), base[section].keys())
  check_run_values(config)
  check_optimizer(config.optim)
  # Data and task first, then their pairing: data of the wrong modality is named before any
  # option of the parts the task composes.
  part_slots.validate(config, [DATA_SLOT, TASK_SLOT])
  check_data_pairing(config)
  rest = [slot for slot in trainer_slots(config) if slot not in (DATA_SLOT, TASK_SLOT)]
  part_slots.validate(config, rest, modality=TASKS.get(config.task).modality)
  early_stopping.validate(config.early_stopping)
  check_pairing(config)
  if "online_probe" in config.evals and not config.online_probe:
    raise ConfigError(
      "config.evals.online_probe reads the probe trained during the run; set "
      "config.online_probe=True as well."
    )
  check_data_paths(config.data)
  check_source_and_tokenizer(config)


def check_source_and_tokenizer(config: ml_collections.ConfigDict) -> None:
  """Before any data is read: `config.init_from` holds a run or model directory (and a model
  directory's tokenizer is the data's), and the tokenizer has every special token the task
  needs (`Task.token_roles`, e.g. [MASK] for masked language modelling)."""
  task_class = TASKS.get(config.task)
  tokenizer_path = config.data.get("tokenizer_path") or ""
  if config.init_from:
    if "init_from" in TASKS.option_defaults(config.task, num_positional=2):
      raise ConfigError(
        f"config.init_from={config.init_from!r}: task {config.task!r} names the run it starts "
        "from in config.task_kwargs.init_from; leave config.init_from empty."
      )
    check_source(config.init_from, requires=(), what="config.init_from")
    if is_model_directory(config.init_from) and task_class.modality == "text":
      check_tokenizer(config.init_from, tokenizer_path, "config.init_from")
  if tokenizer_path and task_class.token_roles and is_tokenizer_source(tokenizer_path):
    tokenizer = load_tokenizer(tokenizer_path)
    for role in task_class.token_roles:
      tokenizer.require(role, f"task {config.task!r}")


def check_data_paths(data: ml_collections.ConfigDict) -> None:
  """Every path-like data option (`path`, `data_dir`, `*_path`, `*_dir`) exists."""
  for key, value in data.items():
    is_path = (
      key in ("path", "data_dir")
      or key.endswith(("_path", "_dir"))
      and key not in ("train_dir", "test_dir")
    )
    if (
      is_path and value and isinstance(value, str) and not os.path.exists(os.path.expanduser(value))
    ):
      raise ConfigError(f"config.data.{key}={value!r} does not exist.")


def check_data_pairing(config: ml_collections.ConfigDict) -> None:
  """The task's modality against the dataset's declared one, and every split an evaluator
  names against the dataset's declared splits (where they are static), before any data is
  read."""
  modality = DATASETS.fact(config.data.name, "modality")
  needed = TASKS.get(config.task).modality
  if modality is not None and needed is not None and modality != needed:
    image_or_text = [n for n in DATASETS.names() if DATASETS.fact(n, "modality") == needed]
    raise ConfigError(
      f"Task {config.task!r} needs {needed} data, but dataset {config.data.name!r} is "
      f"{modality} data; {needed} datasets: {image_or_text}."
    )
  splits = DATASETS.fact(config.data.name, "splits")
  if splits is None:
    return  # decided by the data (files, TFDS): checked when the evaluator reads it
  if int(config.early_stopping.every):
    splits = (*splits, VALIDATION)  # held out of train for it
  for name, options in config.evals.items():
    # `split` / `*_split` options name a split the evaluator must read (a `splits` list is
    # the ones to report, those absent skipped).
    named = [v for k, v in (options or {}).items() if k == "split" or k.endswith("_split")]
    unknown = [s for s in named if s not in splits]
    if unknown:
      raise ConfigError(
        f"config.evals.{name} reads split(s) {unknown}; dataset {config.data.name!r} has "
        f"{list(splits)}."
      )


def check_optimizer(optim: ml_collections.ConfigDict) -> None:
  """Names, types and ranges of config.optim (a negative learning rate would train by gradient
  ascent; b1 = 1 would never move)."""
  for key, choices in (("name", OPTIMIZERS), ("schedule", SCHEDULES), ("lr_scaling", LR_SCALINGS)):
    if optim[key] not in choices:
      raise ConfigError(f"Unknown config.optim.{key} {optim[key]!r}; valid: {list(choices)}.")
  check_values("config.optim", optim, base_config().optim)
  for key in ("b1", "b2"):
    if not 0.0 <= float(optim[key]) < 1.0:
      raise ConfigError(f"config.optim.{key}={optim[key]!r} must be in [0, 1).")
  if float(optim.eps) <= 0:
    raise ConfigError(f"config.optim.eps={optim.eps!r} must be > 0.")


def check_run_values(config: ml_collections.ConfigDict) -> None:
  """Types and ranges of the top-level run settings and the label budget."""
  base = base_config()
  scalars = {k: config[k] for k in base if not isinstance(base[k], ml_collections.ConfigDict)}
  check_values("config", scalars, {k: base[k] for k in scalars})
  check_values("config.label_budget", config.label_budget, base.label_budget)
  for key in ("batch_size", "log_every", "checkpoint_every", "eval_batch_size", "keep_checkpoints"):
    if int(config[key]) <= 0:
      raise ConfigError(f"config.{key} must be positive, got {config[key]!r}.")
  if int(config.total_steps) < 0:
    # 0 evaluates the initial (e.g. pretrained, or zero-shot) model without a step.
    raise ConfigError(f"config.total_steps must be >= 0, got {config.total_steps!r}.")
