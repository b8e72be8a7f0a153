"""The active-learning loop: rounds of query -> reveal -> train -> evaluate, each one saved.

  python -m ssl_jax.active.main --config configs/active_learning_digits.py --workdir W

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
from ssl_jax import tasks as _tasks  # noqa: F401  (registers the tasks)
from ssl_jax.active.encoder_features import (
  pretrained_features,
  read_round_outputs,
  write_round_outputs,
)
from ssl_jax.active.learners import LEARNERS, Learner, PoolData, RoundInputs
from ssl_jax.active.oracle import ORACLES, Oracle
from ssl_jax.active.schema import check_resume, resolve
from ssl_jax.active.strategies.base import QUERY_STRATEGIES, Pool
from ssl_jax.errors import ConfigError, DataError, UserError
from ssl_jax.metrics import write_json
from ssl_jax.registry import DATASETS
from ssl_jax.runs.lock import WorkdirLock, check_workdir_path


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
