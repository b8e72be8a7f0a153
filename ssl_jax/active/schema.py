"""The active-learning config's schema: `config.active` with every option's default, the parts
it names (query strategies, the learner, the oracle) and their option defaults, and every check
that runs before any round: names, options and their values, the budgets, which strategy can
read what the learner provides, and the resume contract of a saved run.

  config.init_from   a finished pretraining workdir or a model directory (the encoder queried
                     from)
  config.data        the pool's dataset (its train split; test for the accuracy)
  config.active      strategy (+ _kwargs), first_strategy (+ _kwargs), budgets, learner
                     (+ _kwargs), warm_start, oracle
"""

from __future__ import annotations

from typing import Any

import ml_collections

from ssl_jax import part_slots
from ssl_jax.active.learners import LEARNERS
from ssl_jax.active.oracle import ORACLES
from ssl_jax.active.strategies.base import QUERY_STRATEGIES
from ssl_jax.capabilities import Represents
from ssl_jax.config_base import DATA_SLOT
from ssl_jax.errors import ConfigError, ResumeError
from ssl_jax.part_slots import NAME, Slot
from ssl_jax.registry import DATASETS, TASKS, check_options
from ssl_jax.runs.finished import check_source

TOP_LEVEL_KEYS = ("init_from", "data", "seed", "eval_batch_size", "active")


def fill_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The command line's defaults filler (`ssl_jax.config_file`): every option of every part
  the config names, so any of them can be overridden by flag."""
  part_slots.fill_defaults(config, SLOTS)
  config.lock()
  return config


def active_defaults() -> ml_collections.ConfigDict:
  """Every option of `config.active`, with its default."""
  return ml_collections.ConfigDict(
    dict(
      strategy="typiclust",
      strategy_kwargs={},
      first_strategy="",  # "" = `strategy` (which then must need no trained model)
      first_strategy_kwargs={},
      budgets=(10, 20, 30, 50, 100, 200),
      learner="linear_head",
      learner_kwargs={},
      warm_start=False,
      oracle="dataset",
    )
  )


# The parts an active-learning config names (`ssl_jax.part_slots`), in the order they are
# checked; the pool's dataset is the trainer's data slot.
ACTIVE_SLOTS = (
  Slot("active", "strategy", QUERY_STRATEGIES),
  Slot("active", "first_strategy", QUERY_STRATEGIES, optional=True),  # "": `strategy`
  Slot("active", "learner", LEARNERS, num_positional=2),
  Slot("active", "oracle", ORACLES, NAME, num_positional=2),
)
SLOTS = (DATA_SLOT, *ACTIVE_SLOTS)


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with every `active` default filled in, checked before any work."""
  config = ml_collections.ConfigDict(config.to_dict())
  check_options(
    "the active-learning config",
    config.keys(),
    TOP_LEVEL_KEYS,
  )
  if not config.get("init_from"):
    raise ConfigError(
      "config.init_from must name a finished pretraining workdir or a model directory."
    )
  active = active_defaults()
  check_options("config.active", config.get("active", {}).keys(), active.keys())
  active.update(config.get("active", {}))
  config.active = active
  part_slots.fill_defaults(config, SLOTS)
  check_pool_data(config)
  config.seed = int(config.get("seed", 0))
  config.eval_batch_size = int(config.get("eval_batch_size", 256))
  budgets = [int(b) for b in active.budgets]
  if not budgets or budgets[0] <= 0 or any(b <= a for a, b in zip(budgets, budgets[1:])):
    raise ConfigError(
      f"config.active.budgets={list(active.budgets)} must be positive and increasing (the "
      "labelled-set size after each round)."
    )
  part_slots.validate(config, ACTIVE_SLOTS)
  first = active.first_strategy or active.strategy
  if not QUERY_STRATEGIES.get(first).cold_start():
    cold = [n for n in QUERY_STRATEGIES.names() if QUERY_STRATEGIES.get(n).cold_start()]
    raise ConfigError(
      f"Round 0 has no trained model, and {first!r} needs one ({QUERY_STRATEGIES.get(first).needs}); "
      f"set config.active.first_strategy to one of {cold}."
    )
  learner = LEARNERS.get(active.learner)
  oracle = ORACLES.get(active.oracle)
  known = {"labels"} if oracle.knows_all_labels else set()
  # Round 0 reads the pretrained features; later rounds what the learner provides.
  uses = [(first, {"features"} | known, "round 0 (pretrained features)")]
  if len(budgets) > 1:
    uses.append((active.strategy, set(learner.provides) | known, f"learner {active.learner!r}"))
  for name, available, source in uses:
    missing = set(QUERY_STRATEGIES.get(name).needs) - available
    if missing:
      givers = [n for n in LEARNERS.names() if not missing - set(LEARNERS.get(n).provides) - known]
      raise ConfigError(
        f"Query strategy {name!r} reads {sorted(missing)}, which {source} with oracle "
        f"{active.oracle!r} does not provide"
        + (f"; learners that do: {givers}." if givers and name == active.strategy else ".")
      )
  if active.warm_start and not learner.warm_start:
    warm = [n for n in LEARNERS.names() if LEARNERS.get(n).warm_start]
    raise ConfigError(
      f"config.active.warm_start=True, but learner {active.learner!r} trains from the "
      f"pretrained encoder every round; learners that warm-start: {warm}."
    )
  learner.check(active.learner_kwargs.to_dict(), config)  # last: it may read config files
  return config


def check_pool_data(config: ml_collections.ConfigDict) -> None:
  """config.data names a dataset whose options it accepts, of the modality the pretraining run
  in config.init_from was trained on (read from its config.json), before any data is read."""
  part_slots.validate(config, [DATA_SLOT])
  data = config.data
  pretraining = check_source(config.init_from, requires=(Represents,))
  trained_on = TASKS.get(pretraining.task).modality
  modality = DATASETS.fact(data.name, "modality")
  if modality is not None and trained_on is not None and modality != trained_on:
    raise ConfigError(
      f"config.init_from={config.init_from!r} pretrained {pretraining.task!r} on {trained_on} "
      f"data; dataset {data.name!r} is {modality} data."
    )


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      flat.update(_flat(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
  return flat


def check_resume(saved: dict[str, Any], config: ml_collections.ConfigDict) -> None:
  """The saved run's config must be this one, but for budgets appended at the end. Options
  added to ssl_jax since the run was saved take their defaults (an upgrade is no change)."""
  active = active_defaults()
  active.update(saved.get("active", {}))
  filled = ml_collections.ConfigDict({**saved, "active": active.to_dict()})
  part_slots.fill_defaults(filled, SLOTS)
  old, new = _flat(filled.to_dict()), _flat(config.to_dict())
  old_budgets, new_budgets = list(old.pop("active.budgets")), list(new.pop("active.budgets"))
  changed = [
    f"{key} {old.get(key)!r} -> {new.get(key)!r}"
    for key in sorted(set(old) | set(new))
    if old.get(key) != new.get(key)
  ]
  if new_budgets[: len(old_budgets)] != old_budgets:
    changed.append(f"active.budgets {old_budgets} -> {new_budgets}")
  if changed:
    raise ResumeError(
      f"This workdir holds an active-learning run with another config ({'; '.join(changed[:8])}); "
      "only budgets appended at the end may change. Use a new --workdir."
    )
