"""The Colab notebooks run top to bottom (on tiny settings)."""

import json
import os

import pytest
from conftest import REPO


def _run_notebook(notebook: str) -> dict:
  with open(os.path.join(REPO, "colab", notebook)) as f:
    cells = json.load(f)["cells"]
  namespace = {}
  for cell in cells:
    if cell["cell_type"] != "code":
      continue
    # Shell and magic lines (!pip, %matplotlib) are Colab-only.
    source = "".join(line for line in cell["source"] if not line.lstrip().startswith(("!", "%")))
    exec(compile(source, f"{notebook}", "exec"), namespace)
  return namespace


@pytest.mark.parametrize("notebook", ["quickstart.ipynb"])
def test_notebook_code_cells_run(notebook, monkeypatch, tmp_path):
  monkeypatch.setenv("QUICKSTART_STEPS", "2")
  monkeypatch.setenv("SSL_JAX_REPO", REPO)
  monkeypatch.chdir(tmp_path)
  results = _run_notebook(notebook)["results"]
  assert results["step"] == 2
  assert set(results["evals"]) == {"linear_probe", "knn"}


def test_active_learning_notebook_runs_rounds_and_plots(monkeypatch, tmp_path):
  import matplotlib

  matplotlib.use("Agg")  # plt.show() is a no-op off-screen
  monkeypatch.setenv("ACTIVE_STEPS", "2")
  monkeypatch.setenv("ACTIVE_BUDGETS", "10,20")
  monkeypatch.setenv("SSL_JAX_REPO", REPO)
  monkeypatch.chdir(tmp_path)
  results = _run_notebook("active_learning.ipynb")["results"]
  assert set(results) == {"random", "typiclust", "probcover", "entropy"}
  assert all(list(curve) == [10, 20] for curve in results.values())
  assert results["entropy"][10] == results["random"][10]  # the same random first round
  assert all(0 < accuracy <= 100 for curve in results.values() for accuracy in curve.values())


def test_reward_finetuning_notebook_trains_and_plots(monkeypatch, tmp_path):
  import matplotlib

  matplotlib.use("Agg")
  monkeypatch.setenv("REWARD_PRETRAIN_STEPS", "60")
  monkeypatch.setenv("REWARD_STEPS", "4")
  monkeypatch.setenv("SSL_JAX_REPO", REPO)
  monkeypatch.chdir(tmp_path)
  namespace = _run_notebook("reward_finetuning.ipynb")
  table = namespace["results"]["evals"]["reward"]
  assert set(table) == {"reward_finetuning", "reference (before)"}
  assert 0 <= table["reference (before)"]["success"] <= 1
  assert [r["step"] for r in namespace["records"]] == [1, 2, 3, 4]
  assert all(r["kl"] >= 0 for r in namespace["records"])
