"""End-to-end runs of train_and_evaluate: outputs, resume, preemption, NaN handling."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, tiny_mlm_config, tiny_simclr_config

from ssl_jax import train
from ssl_jax.data.digits import digits
from ssl_jax.data.pipeline import ShuffledBatches
from ssl_jax.data.source import Dataset
from ssl_jax.errors import NonFiniteLossError
from ssl_jax.registry import DATASETS


def _saved_state(workdir, step):
  """The raw arrays of a saved train state, read back without any target structure."""
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return jax.tree.leaves(ocp.StandardCheckpointer().restore(path))


def _assert_bitwise_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())


def test_simclr_smoke_run_writes_the_workdir_contract(tmp_path):
  workdir = str(tmp_path)
  results = train.train_and_evaluate(tiny_simclr_config(), workdir)
  probe = results["evals"]["linear_probe"]
  assert set(probe) == {"simclr", "random init", "raw pixels"}
  assert set(probe["simclr"]) == {"acc@1/class", "acc@all"}
  assert 0.1 < probe["raw pixels"]["acc@all"]["mean"] <= 1.0
  assert set(results["evals"]["knn"]) == {"simclr", "random init", "raw pixels"}
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["evals"] == results["evals"]
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert [r["step"] for r in records] == [2, 4]
  assert {"loss", "learning_rate", "examples_per_second", "contrastive_accuracy"} <= set(records[0])
  assert json.load(open(os.path.join(workdir, "config.json")))["task"] == "simclr"
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard"))
  assert _steps(workdir) == [2, 4]
  # Re-running a finished workdir resumes at the end: no training, same evaluation.
  again = train.train_and_evaluate(tiny_simclr_config(), workdir)
  assert again["evals"] == results["evals"]
  assert len(open(os.path.join(workdir, "metrics.jsonl")).readlines()) == 2


def test_mlm_smoke_run_reports_masked_accuracy_and_unigram_baseline(tmp_path):
  results = train.train_and_evaluate(tiny_mlm_config(), str(tmp_path))
  table = results["evals"]["masked_lm"]
  assert set(table) == {"mlm", "unigram (most frequent token)"}
  assert 0.0 <= table["mlm"]["masked acc"] <= 1.0
  assert np.isfinite(table["mlm"]["masked loss"]) and table["mlm"]["masked loss"] > 0
  assert 0.0 < table["unigram (most frequent token)"]["masked acc"] < 0.2
  assert (tmp_path / "tokenizer.model").exists()


@pytest.mark.e2e
def test_resume_after_a_kill_is_bitwise_identical(tmp_path):
  config = tiny_simclr_config(total_steps=6, keep_checkpoints=10)
  full = str(tmp_path / "full")
  train.train_and_evaluate(config, full)
  # A run killed (SIGKILL) after step 4 leaves the checkpoints of steps 2 and 4, and maybe a
  # half-written temporary directory of a later save.
  killed = tmp_path / "killed"
  shutil.copytree(os.path.join(full, "checkpoints", "2"), killed / "checkpoints" / "2")
  shutil.copytree(os.path.join(full, "checkpoints", "4"), killed / "checkpoints" / "4")
  (killed / "checkpoints" / "6.orbax-checkpoint-tmp-1234" / "state").mkdir(parents=True)
  train.train_and_evaluate(config, str(killed))
  assert _steps(str(killed)) == [2, 4, 6]
  _assert_bitwise_equal(_saved_state(full, 6), _saved_state(str(killed), 6))


def _dataset_with_nan(workdir=None, bad_index: int = 0) -> Dataset:
  """72 digits, one of them NaN: corrupt data that the run must not checkpoint past."""
  data = digits()
  images = data.split("train")["image"][:72].copy()
  images[bad_index] = np.nan
  return Dataset(
    {
      "train": {"image": images, "label": data.split("train")["label"][:72]},
      "test": data.split("test"),
    },
    modality="image",
    info=data.info,
  )


DATASETS.register("digits_with_a_nan_image", modality="image")(_dataset_with_nan)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
  # 4 batches of 16 per epoch of 72: the 8 left over in epoch 0 are first seen in epoch 1.
  batches = ShuffledBatches({"i": np.arange(72)}, 16, seed=0, process_index=0, process_count=1)
  seen_in_epoch_0 = np.concatenate([batches.indices(p) for p in range(4)])
  seen_in_epoch_1 = np.concatenate([batches.indices(p) for p in range(4, 8)])
  bad_index = int(np.setdiff1d(seen_in_epoch_1, seen_in_epoch_0)[0])
  first_bad_step = 1 + min(p for p in range(8) if bad_index in batches.indices(p))
  assert first_bad_step > 4
  last_good = 2 * ((first_bad_step - 1) // 2)  # Checkpoints every 2 steps.
  config = tiny_simclr_config(batch_size=16, total_steps=8, log_every=100, checkpoint_every=2)
  config.data = {"name": "digits_with_a_nan_image", "bad_index": bad_index}
  with pytest.raises(
    NonFiniteLossError,
    match=rf"nan at step {first_bad_step}.*last good checkpoint is step "
    rf"{last_good}",
  ):
    train.train_and_evaluate(config, str(tmp_path))
  assert _steps(str(tmp_path)) == list(range(2, last_good + 1, 2))
  assert all(
    np.all(np.isfinite(x))
    for x in _saved_state(str(tmp_path), last_good)
    if np.issubdtype(np.asarray(x).dtype, np.floating)
  )


@pytest.fixture
def main_env():
  return {**os.environ, "PYTHONPATH": REPO}


@pytest.mark.e2e
def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes_bitwise_identical(tmp_path, main_env):
  overrides = [
    "--config.model_kwargs.stage_sizes=(1,)",
    "--config.model_kwargs.width=8",
    "--config.task_kwargs.projector_hidden_dim=16",
    "--config.task_kwargs.projector_dim=8",
    "--config.batch_size=32",
    "--config.eval_batch_size=64",
    "--config.log_every=1",
    "--config.checkpoint_every=1000",
    "--config.total_steps=200",
    "--config.evals.linear_probe.draws=1",
  ]
  workdir = str(tmp_path / "run")
  command = [
    sys.executable,
    "-m",
    "ssl_jax.main",
    "--config",
    "configs/simclr_digits.py",
    "--workdir",
    workdir,
    *overrides,
  ]
  process = subprocess.Popen(
    command, cwd=REPO, env=main_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  # Wait until training is under way (a few progress lines), then ask it to stop. The watchdog
  # turns a hung child into a test failure instead of a hung suite.
  watchdog = threading.Timer(300, process.kill)
  watchdog.start()
  seen = 0
  for line in process.stdout:
    seen += line.startswith("step ")
    if seen == 5:
      break
  process.send_signal(signal.SIGTERM)
  watchdog.cancel()
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 143, stderr
  assert "Interrupted by SIGTERM at step" in stderr
  interrupted_at = int(stderr.split("Interrupted by SIGTERM at step ")[1].split(";")[0])
  assert 5 <= interrupted_at < 200
  assert _steps(workdir) == [interrupted_at]  # Saved although not a multiple of 1000.
  # The same command resumes from that checkpoint and matches an uninterrupted run bitwise.
  resumed = subprocess.run(
    command, cwd=REPO, env=main_env, capture_output=True, text=True, timeout=600
  )
  assert resumed.returncode == 0, resumed.stderr
  assert f"Resumed from the checkpoint of step {interrupted_at}" in resumed.stdout
  reference = str(tmp_path / "reference")
  uninterrupted = subprocess.run(
    command[:6] + [reference] + overrides,
    cwd=REPO,
    env=main_env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert uninterrupted.returncode == 0, uninterrupted.stderr
  _assert_bitwise_equal(_saved_state(reference, 200), _saved_state(workdir, 200))


def test_resuming_with_a_different_model_is_refused_before_anything_is_written(tmp_path):
  from ssl_jax.errors import CheckpointMismatchError, ResumeError

  train.train_and_evaluate(tiny_simclr_config(total_steps=2, evals={}), str(tmp_path))
  recorded = (tmp_path / "config.json").read_bytes()
  listing = sorted(p.name for p in tmp_path.iterdir())
  with pytest.raises(ResumeError, match=r"model_kwargs\.width 8 -> 16.*fresh workdir"):
    train.train_and_evaluate(
      tiny_simclr_config(total_steps=2, evals={}, **{"model_kwargs.width": 16}), str(tmp_path)
    )
  assert (tmp_path / "config.json").read_bytes() == recorded
  assert sorted(p.name for p in tmp_path.iterdir()) == listing
  # Without its config.json the checkpoint's own record still tells the difference.
  (tmp_path / "config.json").unlink()
  with pytest.raises(CheckpointMismatchError, match=r"step 2.*does not match.*differences"):
    train.train_and_evaluate(
      tiny_simclr_config(total_steps=2, evals={}, **{"model_kwargs.width": 16}), str(tmp_path)
    )
  assert not (tmp_path / "config.json").exists()
