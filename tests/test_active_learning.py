"""The active-learning loop: rounds through the learner, resume, the contract checks before
any work, the human-in-the-loop round trip, and MC-dropout inference of the linear head."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import load_config

from ssl_jax.active import learners, rounds
from ssl_jax.active.oracle import AwaitingLabels
from ssl_jax.errors import ConfigError, DataError, ResumeError


def _config(init_from, **active):
  config = load_config("active_learning_digits")
  config.init_from = init_from
  config.eval_batch_size = 64
  config.active.budgets = [10, 20, 30]
  linear = active.get("learner", "linear_head") == "linear_head"
  config.active.learner_kwargs = active.pop("learner_kwargs", {"steps": 50} if linear else {})
  config.active.update(active)
  return config


def _rounds(workdir):
  with open(os.path.join(workdir, "rounds.json")) as f:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in json.load(f)["rounds"]]


def test_rounds_query_reveal_train_and_resume_identically(simclr_workdir, tmp_path, monkeypatch):
  config = _config(simclr_workdir, strategy="typiclust")
  whole = rounds.run_active_learning(config, str(tmp_path / "whole"))
  done = _rounds(tmp_path / "whole")
  assert [r["labels_total"] for r in done] == [10, 20, 30]
  queried = [i for r in done for i in r["queried"]]
  assert len(queried) == len(set(queried)) == 30  # nothing asked twice
  assert all(len(r["queried"]) == 10 for r in done)
  hidden = np.asarray(load_digits_labels())
  assert all(r["labels"] == hidden[r["queried"]].tolist() for r in done)  # the true labels
  assert sum(done[-1]["class_counts"]) == 30
  assert all(0.0 < r["test_accuracy"] <= 1.0 for r in done)
  assert whole["curve"] == {str(r["labels_total"]): r["test_accuracy"] for r in done}
  assert os.path.isfile(tmp_path / "whole" / "round_2" / "head.npz")

  # Killed during round 1: the same command resumes there, with identical results.
  real_fit = learners.LinearHead.fit

  def crash_in_round_1(self, inputs, warm_start):
    if inputs.round == 1:
      raise KeyboardInterrupt
    return real_fit(self, inputs, warm_start)

  monkeypatch.setattr(learners.LinearHead, "fit", crash_in_round_1)
  with pytest.raises(KeyboardInterrupt):
    rounds.run_active_learning(config, str(tmp_path / "killed"))
  assert len(_rounds(tmp_path / "killed")) == 1
  monkeypatch.setattr(learners.LinearHead, "fit", real_fit)
  rounds.run_active_learning(config, str(tmp_path / "killed"))
  assert _rounds(tmp_path / "killed") == done

  # More budgets appended continue the run; any other change is refused.
  longer = _config(simclr_workdir, strategy="typiclust", budgets=[10, 20, 30, 40])
  rounds.run_active_learning(longer, str(tmp_path / "whole"))
  assert _rounds(tmp_path / "whole")[:3] == done and len(_rounds(tmp_path / "whole")) == 4
  with pytest.raises(ResumeError, match="strategy"):
    rounds.run_active_learning(_config(simclr_workdir, strategy="coreset"), str(tmp_path / "whole"))


def load_digits_labels():
  from ssl_jax.data.digits import digits

  return digits().split("train")["label"]


def test_uncertainty_after_a_random_first_round_and_warm_start(simclr_workdir, tmp_path):
  config = _config(
    simclr_workdir, strategy="bald", first_strategy="random", warm_start=True, budgets=[10, 15]
  )
  result = rounds.run_active_learning(config, str(tmp_path))
  assert [r["strategy"] for r in result["rounds"]] == ["random", "bald"]
  assert len(result["rounds"][1]["queried"]) == 5


@pytest.mark.parametrize(
  "active, message",
  [
    (dict(strategy="entropy"), "first_strategy to one of"),
    (dict(strategy="bald", first_strategy="random", learner="fine_tune"), "mc_probs"),
    (dict(learner="fine_tune", warm_start=True), "learners that warm-start: \\['linear_head'\\]"),
    (dict(budgets=[10, 10]), "positive and increasing"),
    (dict(strategy="typiclus"), "Did you mean 'typiclust'"),
    (dict(learner_kwargs={"stepz": 3}), "stepz"),
    (dict(learner_kwargs={"dropout": 1.0}), r"drops every feature; it must be in \[0, 1\)"),
    (dict(stratgy="random"), "stratgy"),
    # Ranges declared beside a strategy's defaults, refused before round 0 trains.
    (dict(strategy_kwargs={"k_neighbours": 0}), "k_neighbours=0 is out of range: it must be >= 1"),
    (
      dict(strategy="power_bald", first_strategy="random", strategy_kwargs={"power": -1.0}),
      "power=-1.0 is out of range",
    ),
    (dict(strategy="stratified_random", oracle="human"), "labels"),
    (
      dict(learner="fine_tune", learner_kwargs={"overrides": {"task_kwargs": {"methd": "x"}}}),
      "overrides.task_kwargs.methd: configs/classify_digits.py has no such option",
    ),
    (
      dict(learner="fine_tune", learner_kwargs={"overrides": {"task_kwargs": {"method": "x"}}}),
      "method",
    ),
    (
      dict(learner="fine_tune", learner_kwargs={"config_file": "configs/simclr_digits.py"}),
      "not a",
    ),
  ],
)
def test_config_errors_before_any_work(simclr_workdir, tmp_path, active, message):
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=message):
    rounds.run_active_learning(_config(simclr_workdir, **active), str(workdir))
  assert not workdir.exists()  # nothing written


def test_pool_data_is_checked_before_any_work(simclr_workdir, tmp_path):
  """The pool's dataset options and its modality against the pretraining run's, before any
  dataset is built or the workdir made."""
  config = _config(simclr_workdir)
  config.data = {"name": "python_text"}
  with pytest.raises(
    ConfigError, match="pretrained 'simclr' on image data; dataset 'python_text' is text"
  ):
    rounds.run_active_learning(config, str(tmp_path / "a"))
  config.data = {"name": "digits", "test_fraction": 1.5}
  with pytest.raises(ConfigError, match="test_fraction=1.5 is out of range"):
    rounds.run_active_learning(config, str(tmp_path / "b"))
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_budget_beyond_the_pool(simclr_workdir, tmp_path):
  with pytest.raises(ConfigError, match="more than the 1257 examples"):
    rounds.run_active_learning(_config(simclr_workdir, budgets=[10, 5000]), str(tmp_path))


def _fill(path, labels):
  with open(path, newline="") as f:
    rows = list(csv.DictReader(f))
  for row, label in zip(rows, labels):
    row["label"] = label
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return [int(row["id"]) for row in rows]


def test_human_in_the_loop_round_trip(simclr_workdir, tmp_path):
  config = _config(simclr_workdir, strategy="coreset", oracle="human", budgets=[6, 10])
  workdir = str(tmp_path / "human")
  with pytest.raises(AwaitingLabels, match="round_0.csv"):
    rounds.run_active_learning(config, workdir)
  table = os.path.join(workdir, "queries", "round_0.csv")
  assert os.path.getsize(os.path.join(workdir, "queries", "round_0.png")) > 1000
  with open(table) as f:
    assert f.readline().strip() == "id,label"
  hidden = load_digits_labels()
  ids = _fill(table, ["1", "", "3", "4", "5", "6"])
  with pytest.raises(DataError, match=r"round_0.csv line 3 \(id \d+\): empty label"):
    rounds.run_active_learning(config, workdir)
  _fill(table, ["1", "2", "seven", "4", "5", "6"])
  with pytest.raises(DataError, match=r"line 4 \(id \d+\): unknown class 'seven'; valid: \['0'"):
    rounds.run_active_learning(config, workdir)
  _fill(table, [str(hidden[i]) for i in ids])  # the true labels, as a careful annotator would
  with pytest.raises(AwaitingLabels, match="Round 1: 4 examples"):
    rounds.run_active_learning(config, workdir)
  _fill(os.path.join(workdir, "queries", "round_1.csv"), [str(hidden[i]) for i in _ids(workdir, 1)])
  rounds.run_active_learning(config, workdir)
  # The same as letting the dataset reveal the labels.
  simulated = str(tmp_path / "simulated")
  rounds.run_active_learning(
    _config(simclr_workdir, strategy="coreset", budgets=[6, 10]), simulated
  )
  assert _rounds(workdir) == _rounds(simulated)


def _ids(workdir, k):
  with open(os.path.join(workdir, "queries", f"round_{k}.csv"), newline="") as f:
    return [int(row["id"]) for row in csv.DictReader(f)]


@pytest.mark.e2e
def test_fine_tune_learner_runs_the_trainer_each_round(simclr_workdir, tmp_path):
  config = _config(
    simclr_workdir,
    strategy="margin",
    first_strategy="typiclust",
    learner="fine_tune",
    budgets=[10, 20],
    learner_kwargs=dict(
      config_file="configs/classify_digits.py",
      overrides={"total_steps": 3, "batch_size": 16, "eval_batch_size": 64, "log_every": 1},
    ),
  )
  result = rounds.run_active_learning(config, str(tmp_path))
  assert [r["strategy"] for r in result["rounds"]] == ["typiclust", "margin"]
  for k in range(2):
    with open(tmp_path / f"round_{k}" / "run" / "config.json") as f:
      run = json.load(f)
    labelled = [i for r in result["rounds"][: k + 1] for i in r["queried"]]
    assert run["label_budget"]["indices"] == labelled
    with open(tmp_path / f"round_{k}" / "run" / "results.json") as f:
      assert json.load(f)["step"] == 3
  outputs = np.load(tmp_path / "round_1" / "pool.npz")
  assert outputs["probs"].shape == (1257, 10)
  np.testing.assert_allclose(outputs["probs"].sum(-1), 1.0, rtol=1e-5)


def test_mc_dropout_masks_are_shared_across_the_pool():
  # Two identical pool rows get identical samples (one mask per sample for every example);
  # samples differ from each other; dropout 0 makes every sample the plain prediction.
  features = np.tile(np.linspace(-1, 1, 16, dtype=np.float32), (6, 1))
  features[3:] *= -1
  labels = np.array([0, 0, 0, 1, 1, 1], np.int32)
  weights = np.ones(6, np.float32)
  init = (np.zeros((16, 2), np.float32), np.zeros(2, np.float32))
  args = (features, labels, weights, features, init, jax.random.key(0), 1.0, 1e-2)
  _, _, probs, mc = learners._train_head(*args, 0.5, num_classes=2, steps=20, mc_samples=8)
  assert mc.shape == (8, 6, 2)
  np.testing.assert_array_equal(mc[:, 0], mc[:, 1])
  assert float(jnp.std(mc[:, 0, 0])) > 1e-3
  _, _, probs, mc = learners._train_head(*args, 0.0, num_classes=2, steps=20, mc_samples=3)
  np.testing.assert_allclose(mc, np.broadcast_to(probs, mc.shape), rtol=1e-6)


def test_human_oracle_writes_the_text_of_text_queries(tmp_path):
  from ssl_jax.active.oracle import HumanOracle
  from ssl_jax.data.text_classification import text_classification_files

  words = {"sports": "ball goal team match score player", "weather": "rain sun cloud wind storm"}
  rows = [(label, f"{words[label]} n{i}") for i, label in enumerate(["sports", "weather"] * 20)]
  path = tmp_path / "labelled.csv"
  path.write_text("text,label\n" + "".join(f"{t},{y}\n" for y, t in rows))
  data = text_classification_files(str(tmp_path), paths=str(path), seq_len=16, vocab_size=40)
  oracle = HumanOracle(data, str(tmp_path / "run"))
  with pytest.raises(AwaitingLabels, match=r"\['sports', 'weather'\]"):
    oracle.reveal(0, np.array([2, 0]))
  table = tmp_path / "run" / "queries" / "round_0.csv"
  with open(table, newline="") as f:
    written = list(csv.DictReader(f))
  assert [r["id"] for r in written] == ["2", "0"] and list(written[0]) == ["id", "text", "label"]
  train = data.split("train")
  for row, index in zip(written, (2, 0)):
    label = data.info["class_names"][int(train["label"][index])]
    assert row["text"].startswith(words[label].split()[0])  # the docstring, decoded
  assert not (tmp_path / "run" / "queries" / "round_0.png").exists()  # images only
  _fill(table, ["weather", "sports"])
  np.testing.assert_array_equal(oracle.reveal(0, np.array([2, 0])), [1, 0])


def _cli(*arguments):
  import subprocess
  import sys

  from conftest import REPO

  command = [sys.executable, "-m", "ssl_jax.active.main", *arguments]
  env = {**os.environ, "XLA_FLAGS": ""}
  return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_command_line_errors_and_the_stop_for_labels(simclr_workdir, tmp_path):
  config = "--config=configs/active_learning_digits.py"
  bad = _cli(
    config,
    f"--workdir={tmp_path / 'a'}",
    f"--config.init_from={simclr_workdir}",
    "--config.active.strategy=entropy",
  )
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines()[-1].startswith("Error: Round 0 has no trained model")
  missing = _cli(config, f"--workdir={tmp_path / 'b'}", f"--config.init_from={tmp_path / 'none'}")
  assert missing.returncode == 2 and "Error:" in missing.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # nothing written
  human = _cli(
    config,
    f"--workdir={tmp_path / 'h'}",
    f"--config.init_from={simclr_workdir}",
    "--config.active.oracle=human",
    "--config.active.budgets=(5, 10)",
    # A part named on the command line brings its options: any of them can be set.
    "--config.active.strategy=probcover",
    "--config.active.strategy_kwargs.radius=0.4",
  )
  assert human.returncode == 4, human.stderr[-2000:]
  assert "Fill the `label` column of" in human.stderr and "round_0.png" in human.stderr
  assert os.path.isfile(tmp_path / "h" / "queries" / "round_0.csv")


@pytest.mark.e2e
@pytest.mark.parametrize(
  "method",
  [{"method": "linear"}, {"method": "peft", "peft": {"rank": 2}}],
)
def test_fine_tune_learner_with_a_linear_probe_or_lora(simclr_workdir, tmp_path, method):
  overrides = {"total_steps": 2, "batch_size": 16, "eval_batch_size": 64, "log_every": 1}
  config = _config(
    simclr_workdir,
    strategy="coreset",
    learner="fine_tune",
    budgets=[8],
    learner_kwargs=dict(
      config_file="configs/classify_digits.py", overrides={**overrides, "task_kwargs": method}
    ),
  )
  result = rounds.run_active_learning(config, str(tmp_path))
  with open(tmp_path / "round_0" / "run" / "config.json") as f:
    run = json.load(f)
  assert run["task_kwargs"]["method"] == method["method"]
  with open(tmp_path / "round_0" / "run" / "results.json") as f:
    evals = json.load(f)["evals"]["classification"]["image_classification"]
  assert result["rounds"][0]["test_accuracy"] == evals["test acc"]
  # A linear probe trains the head alone; LoRA its rank-2 factors besides.
  dim = np.load(tmp_path / "round_0" / "pool.npz")["features"].shape[1]
  head = dim * 10 + 10
  if method["method"] == "linear":
    assert evals["trainable params"] == head
  else:
    assert evals["trainable params"] > head
