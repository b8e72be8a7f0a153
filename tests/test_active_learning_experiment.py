"""experiments/active_learning.py end to end on a tiny pretraining: the JSON's shape, the
table and figure, and a killed experiment resuming to identical numbers."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.e2e


def _run(workdir, pretraining):
  command = [
    sys.executable,
    os.path.join(REPO, "experiments", "active_learning.py"),
    f"--workdir={workdir}",
    "--suite=digits",
    "--strategies=random,typiclust,entropy",
    "--budgets=10,20",
    "--seeds=2",
    f"--pretraining={pretraining}",
  ]
  env = {**os.environ, "XLA_FLAGS": ""}  # one device, as a user runs it
  done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  with open(os.path.join(workdir, "active_learning.json")) as f:
    return json.load(f)


def test_small_experiment_writes_curves_and_resumes_identically(simclr_workdir, tmp_path):
  workdir = str(tmp_path / "al")
  record = _run(workdir, simclr_workdir)
  table = record["results"]["digits"]
  assert set(table) == {"random", "typiclust", "entropy"}
  for row in table.values():
    assert list(row) == ["10", "20"]
    for cell in row.values():
      assert len(cell["values"]) == 2
      assert abs(cell["mean"] - sum(cell["values"]) / 2) < 1e-9
      assert 0 < cell["mean"] <= 100
  # Entropy's first round is random: the same draw as random's at 10 labels.
  assert table["entropy"]["10"]["values"] == table["random"]["10"]["values"]
  assert set(record["labels_to_reach"]["digits"]["typiclust"]) == {"90%", "95%"}
  assert record["all_labels"]["digits"]["labels"] == 1257
  with open(os.path.join(workdir, "active_learning.md")) as f:
    assert "| typiclust |" in f.read()
  with open(os.path.join(workdir, "active_learning.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  # Killed after round 0 of typiclust's seed 1: the rerun redoes only what is missing.
  state = os.path.join(workdir, "digits", "typiclust", "seed_1", "rounds.json")
  with open(state) as f:
    saved = json.load(f)
  saved["rounds"] = saved["rounds"][:1]
  with open(state, "w") as f:
    json.dump(saved, f)
  untouched = os.path.join(workdir, "digits", "random", "seed_0", "rounds.json")
  before = os.stat(untouched).st_mtime_ns
  os.remove(os.path.join(workdir, "active_learning.json"))
  again = _run(workdir, simclr_workdir)
  assert again["results"] == record["results"]
  assert os.stat(untouched).st_mtime_ns == before
