"""The active-learning loop: rounds of query -> reveal -> train -> evaluate, each one saved.

  python -m ssl_jax.discover.main --config configs/active_learning_digits.py --workdir W

The pool is the dataset's train split with its labels hidden; `config.active.budgets` are the
labelled-set sizes after each round (10, 20, 30, ...). Round 0 starts from zero labels: its
picks come from `first_strategy` (default: the strategy itself), which must need no trained
model (a cold start: random, TypiClust, ProbCover, core-set, ...); a `first_strategy` of
"random" with a first budget of 50 is "start from an initial random budget". Later rounds
query with what the previous round's learner provides (features, probabilities, MC-dropout
samples). The learner trains from the pretrained encoder `config.init_from`, from scratch
every round unless `warm_start` (for learners that declare they can).

Every round is saved before the next begins: its learner's weights and pool outputs under
`<workdir>/round_<k>/`, and its record (queried ids, labels, test accuracy) in
`<workdir>/rounds.json`, written atomically. Keys come from (seed, round), so an interrupted
experiment, run again with the same command, resumes at its round with identical results; a
changed config is refused (ResumeError), except more `budgets` appended at the end.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from ssl_jax import data as _datasets  # noqa: F401  (registers the datasets)
from ssl_jax import discover as _strategies  # noqa: F401  (registers the query strategies)
from ssl_jax import tasks as _tasks  # noqa: F401  (registers the tasks)
from ssl_jax.discover import fine_tune_learner as _fine_tune  # noqa: F401  (registers it)
from ssl_jax.discover.encoder_features import (
  pretrained_features,
  read_round_outputs,
  write_round_outputs,
)
from ssl_jax.discover.learners import LEARNERS, Learner, PoolData, RoundInputs
from ssl_jax.discover.oracle import ORACLES, Oracle
from ssl_jax.discover.query import QUERY_STRATEGIES, Pool
from ssl_jax.errors import ConfigError, DataError, ResumeError, UserError
from ssl_jax.metrics import write_json
from ssl_jax.registry import DATASETS, check_options
from ssl_jax.workdir import WorkdirLock, check_workdir_path


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


# The parts `config.active` names: (the registry, how many arguments it takes before options).
PARTS = {"strategy": (QUERY_STRATEGIES, 0), "first_strategy": (QUERY_STRATEGIES, 0)}
PARTS["learner"] = (LEARNERS, 2)


def fill_part_defaults(active: ml_collections.ConfigDict) -> None:
  """Adds the option defaults of every part `active` names to its `<part>_kwargs` (set values
  stay), so any option can be set from the command line and a config's record is complete."""
  for part, (registry, positional) in PARTS.items():
    name = active.get(part)
    if name and name in registry:
      options = active.get(f"{part}_kwargs") or ml_collections.ConfigDict()
      for key, value in registry.option_defaults(name, positional).items():
        if key not in options:
          options[key] = value
      active[f"{part}_kwargs"] = options


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of `config` with every `active` default filled in, checked before any work."""
  config = ml_collections.ConfigDict(config.to_dict())
  check_options(
    "the active-learning config",
    config.keys(),
    ("init_from", "data", "seed", "eval_batch_size", "active"),
  )
  if not config.get("init_from"):
    raise ConfigError("config.init_from must name a finished pretraining workdir.")
  active = active_defaults()
  check_options("config.active", config.get("active", {}).keys(), active.keys())
  active.update(config.get("active", {}))
  fill_part_defaults(active)
  config.active = active
  config.seed = int(config.get("seed", 0))
  config.eval_batch_size = int(config.get("eval_batch_size", 256))
  budgets = [int(b) for b in active.budgets]
  if not budgets or budgets[0] <= 0 or any(b <= a for a, b in zip(budgets, budgets[1:])):
    raise ConfigError(
      f"config.active.budgets={list(active.budgets)} must be positive and increasing (the "
      "labelled-set size after each round)."
    )
  QUERY_STRATEGIES.validate(
    active.strategy, active.strategy_kwargs, where="config.active.strategy_kwargs"
  )
  first = active.first_strategy or active.strategy
  first_kwargs = active.first_strategy_kwargs if active.first_strategy else active.strategy_kwargs
  QUERY_STRATEGIES.validate(first, first_kwargs, where="config.active.first_strategy_kwargs")
  if not QUERY_STRATEGIES.get(first).cold_start():
    cold = [n for n in QUERY_STRATEGIES.names() if QUERY_STRATEGIES.get(n).cold_start()]
    raise ConfigError(
      f"Round 0 has no trained model, and {first!r} needs one ({QUERY_STRATEGIES.get(first).needs}); "
      f"set config.active.first_strategy to one of {cold}."
    )
  learner = LEARNERS.get(active.learner)
  LEARNERS.validate(
    active.learner, active.learner_kwargs, num_positional=2, where="config.active.learner_kwargs"
  )
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
  fill_part_defaults(active)
  old, new = _flat({**saved, "active": active.to_dict()}), _flat(config.to_dict())
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


def pool_data(config: ml_collections.ConfigDict, workdir: str) -> PoolData:
  options = {k: v for k, v in config.data.items() if k != "name"}
  dataset = DATASETS.build(config.data.name, options, workdir)
  for split in ("train", "test"):
    if split not in dataset.splits or "label" not in dataset.split(split):
      raise DataError(
        f"Active learning needs labelled train (the pool) and test splits; "
        f"{config.data.name!r} has {sorted(dataset.splits)}."
      )
  features = pretrained_features(
    config.init_from,
    dataset,
    ("train", "test"),
    os.path.join(workdir, "pretrained_features.npz"),
    config.eval_batch_size,
  )
  return PoolData(
    dataset=dataset,
    features=features,
    test_labels=np.asarray(dataset.split("test")["label"]),
    num_classes=int(dataset.info["num_classes"]),
    init_from=config.init_from,
  )


def _prepare(config: ml_collections.ConfigDict, workdir: str):
  """(pool data, learner, oracle) of a resolved config, checked against the pool."""
  data = pool_data(config, workdir)
  pool_size = len(data.features["train"])
  if config.active.budgets[-1] > pool_size:
    raise ConfigError(
      f"config.active.budgets ends at {config.active.budgets[-1]}, more than the {pool_size} "
      "examples of the pool."
    )
  learner = LEARNERS.build(config.active.learner, config.active.learner_kwargs, data, config)
  oracle = ORACLES.build(config.active.oracle, {}, data.dataset, workdir)
  return data, learner, oracle


def play_round(
  k: int,
  config: ml_collections.ConfigDict,
  data: PoolData,
  learner: Learner,
  oracle: Oracle,
  rounds: list[dict[str, Any]],
  workdir: str,
) -> dict[str, Any]:
  """Round k: query up to budgets[k] with what round k-1 saved, reveal, train, test; saves
  the learner's pool outputs and returns the round's record (the caller saves it)."""
  start, active = time.time(), config.active
  labelled = np.asarray([i for r in rounds for i in r["queried"]], np.int64)
  labels = np.asarray([y for r in rounds for y in r["labels"]], np.int64)
  mask = np.zeros(len(data.features["train"]), bool)
  mask[labelled] = True
  if k == 0:  # nothing trained yet: the pretrained features
    name = active.first_strategy or active.strategy
    options = active.first_strategy_kwargs if active.first_strategy else active.strategy_kwargs
    outputs = {"features": data.features["train"]}
  else:
    name, options = active.strategy, active.strategy_kwargs
    outputs = read_round_outputs(os.path.join(workdir, f"round_{k - 1}", "pool.npz"))
  hidden = np.asarray(data.dataset.split("train")["label"]) if oracle.knows_all_labels else None
  pool = Pool(labelled=mask, labels=hidden, num_classes=data.num_classes, **outputs)
  strategy = QUERY_STRATEGIES.build(name, options.to_dict())
  key = jax.random.fold_in(jax.random.key(config.seed), k)
  queried = strategy.query(pool, active.budgets[k] - len(labelled), key)
  revealed = oracle.reveal(k, queried)
  directory = os.path.join(workdir, f"round_{k}")
  inputs = RoundInputs(
    round=k,
    labelled=np.concatenate([labelled, queried]),
    labels=np.concatenate([labels, revealed]),
    directory=directory,
    previous=os.path.join(workdir, f"round_{k - 1}") if k else None,
    seed=config.seed * 1000 + k,
  )
  fitted = learner.fit(inputs, warm_start=bool(active.warm_start))
  write_round_outputs(os.path.join(directory, "pool.npz"), fitted.outputs)
  return dict(
    round=k,
    strategy=name,
    labels_total=int(active.budgets[k]),
    queried=[int(i) for i in queried],
    labels=[int(y) for y in revealed],
    class_counts=np.bincount(inputs.labels, minlength=data.num_classes).tolist(),
    test_accuracy=fitted.test_accuracy,
    seconds=round(time.time() - start, 3),
  )


def run_active_learning(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs (or resumes) every round of `config.active.budgets`; returns the results record."""
  config = resolve(config)
  check_workdir_path(workdir)
  state_path = os.path.join(workdir, "rounds.json")
  with WorkdirLock(workdir) as lock:
    saved = _read(state_path)
    try:
      if saved is not None:
        check_resume(saved["config"], config)
      data, learner, oracle = _prepare(config, workdir)
    except UserError:
      if saved is None:
        lock.discard()  # refused before any round: leave the disk as it was
      raise
    rounds = list(saved["rounds"]) if saved else []
    for k in range(len(rounds), len(config.active.budgets)):
      rounds.append(play_round(k, config, data, learner, oracle, rounds, workdir))
      write_json(state_path, {"config": config.to_dict(), "rounds": rounds})
      print(
        f"[round {k}] {rounds[-1]['strategy']}: {rounds[-1]['labels_total']} labels, test "
        f"accuracy {100 * rounds[-1]['test_accuracy']:.2f}%",
        flush=True,
      )
    return results_record(config, rounds)


def results_record(
  config: ml_collections.ConfigDict, rounds: list[dict[str, Any]]
) -> dict[str, Any]:
  return {
    "strategy": config.active.strategy,
    "learner": config.active.learner,
    "curve": {str(r["labels_total"]): r["test_accuracy"] for r in rounds},
    "rounds": rounds,
  }


def _read(path: str) -> dict[str, Any] | None:
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)
