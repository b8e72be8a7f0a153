"""Early stopping: the tracker's rule, the held-out validation split, and a run that validates,
keeps its best state on disk, evaluates that state, and stays stopped when re-run."""

import json
import os

import numpy as np
import pytest
from conftest import load_config

from ssl_jax import train
from ssl_jax.config_base import validate_config
from ssl_jax.data.digits import digits
from ssl_jax.data.records import RecordSplit, take_rows
from ssl_jax.data.validation_split import hold_out_validation
from ssl_jax.early_stopping import EarlyStopping
from ssl_jax.registry import ConfigError


def test_tracker_keeps_the_first_best_and_stops_after_patience():
  tracker = EarlyStopping("validation acc", mode="max", patience=2, min_delta=0.01)
  improved = [
    tracker.update(step, value) for step, value in [(10, 0.50), (20, 0.70), (30, 0.705), (40, 0.70)]
  ]
  # 0.705 is not 0.01 better than 0.70: no improvement, and two of those stop the run.
  assert improved == [True, True, False, False]
  assert (tracker.best_step, tracker.best_value, tracker.stopped) == (20, 0.70, True)
  restored = EarlyStopping("validation acc", patience=2)
  restored.load_state_dict(json.loads(json.dumps(tracker.state_dict())))
  assert restored.state_dict() == tracker.state_dict() and restored.stopped

  loss = EarlyStopping("validation loss", mode="min", patience=0)
  assert [loss.update(s, v) for s, v in [(1, 2.0), (2, 1.5), (3, 1.7)]] == [True, True, False]
  assert loss.best_step == 2 and not loss.stopped  # patience 0 never stops.


def test_validation_is_a_stratified_slice_of_train_and_lazy_splits_stay_lazy():
  dataset = digits()
  held = hold_out_validation(dataset, 0.1)
  train_split, validation = held.split("train"), held.split("validation")
  assert (len(train_split["label"]), len(validation["label"])) == (1131, 126)
  np.testing.assert_allclose(np.bincount(validation["label"]), 12.6, atol=1)
  # Together they are exactly the original train split.
  rows = lambda split: sorted(
    map(
      bytes,
      np.concatenate(  # noqa: E731
        [
          split["image"].reshape(len(split["label"]), -1),
          split["label"][:, None].astype(np.float32),
        ],
        1,
      ),
    )
  )
  original = dataset.split("train")
  assert rows(original) == sorted(rows(train_split) + rows(validation))
  assert held.split("test") is dataset.split("test")
  assert hold_out_validation(held, 0.5) is held  # Already has one: unchanged.

  lazy_train = RecordSplit(
    len(original["label"]),
    lambda i: take_rows(original, i),
    {"image": ((8, 8, 1), np.float32), "label": ((), np.int32)},
  )
  lazy = hold_out_validation(
    dataset.__class__(
      splits={"train": lazy_train, "test": dataset.split("test")}, modality="image"
    ),
    0.1,
  )
  assert isinstance(lazy.split("validation"), RecordSplit)
  np.testing.assert_array_equal(lazy.split("validation")["image"][:], validation["image"])
  np.testing.assert_array_equal(np.asarray(lazy.split("train")["label"]), train_split["label"])

  with pytest.raises(ConfigError, match="validation_fraction must lie in"):
    hold_out_validation(dataset, 0.0)


def _config(simclr_workdir, **stopping):
  config = load_config("classify_digits")
  config.task_kwargs.init_from = simclr_workdir
  config.batch_size, config.eval_batch_size = 16, 128
  config.total_steps, config.log_every, config.checkpoint_every = 8, 4, 4
  config.optim.update(dict(warmup_steps=0, learning_rate=3e-2))
  config.evals = {"classification": {}}
  config.early_stopping.update(dict(every=1, **stopping))
  return config


@pytest.mark.e2e
def test_a_run_evaluates_its_best_validated_state_and_stays_stopped(
  simclr_workdir, tmp_path, devices
):
  # "min" validation accuracy: the best state is an early, barely trained one, so the final
  # evaluation must come from the best checkpoint, not from the last step.
  config = _config(simclr_workdir, patience=3, mode="min")
  results = train.train_and_evaluate(config, str(tmp_path))
  record = results["early_stopping"]
  history = np.array(record["history"])
  best = int(np.argmin(history[:, 1]))
  assert record["best_step"] == history[best, 0] < record["last_step"]
  assert record["stopped_early"] == (record["last_step"] < 8)
  if record["stopped_early"]:
    # Stopped after exactly `patience` validations without a new best.
    assert len(history) - 1 - best == 3 and results["step"] == record["last_step"]
  trained = results["evals"]["classification"]["image_classification"]
  assert trained["validation acc"] == pytest.approx(record["best_value"], abs=1e-9)
  # The best and the previous best (a fallback should the best be damaged).
  kept = sorted(int(step) for step in os.listdir(tmp_path / "best_checkpoint"))
  assert kept[-1] == record["best_step"] and len(kept) <= 2

  # A re-run resumes, does not train again, and evaluates the same best state.
  again = train.train_and_evaluate(config, str(tmp_path))
  assert again["step"] == results["step"]
  assert again["early_stopping"]["history"] == record["history"]
  assert again["evals"] == results["evals"]


def test_early_stopping_config_errors():
  config = load_config("classify_digits")
  config.task_kwargs.init_from = ""  # no pretraining run here (validate_config reads it)
  config.early_stopping.update(dict(every=5, mode="maximum"))
  with pytest.raises(ConfigError, match="Unknown config.early_stopping.mode 'maximum'"):
    validate_config(config)
  config.early_stopping.mode = "max"
  config.early_stopping.options = {"split": "validation"}
  with pytest.raises(ConfigError, match="split"):
    validate_config(config)
