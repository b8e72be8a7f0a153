"""The Colab notebooks run top to bottom (on tiny settings)."""

import json
import os

import pytest
from conftest import REPO

pytestmark = pytest.mark.e2e


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


NOTEBOOKS = (
  "vision.ipynb",
  "language.ipynb",
  "internalization.ipynb",
  "active_learning.ipynb",
  "reward_finetuning.ipynb",
)


def test_every_notebook_is_tested_and_opens_with_the_colab_install():
  """One notebook per pillar, each executed below; each says how to pick a runtime and
  installs ssl_jax in its first code cell."""
  assert sorted(
    n for n in os.listdir(os.path.join(REPO, "colab")) if n.endswith(".ipynb")
  ) == sorted(NOTEBOOKS)
  for notebook in NOTEBOOKS:
    with open(os.path.join(REPO, "colab", notebook)) as f:
      cells = json.load(f)["cells"]
    intro = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and "TPU" in intro and "GPU" in intro, notebook
    install = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    assert "find_spec('ssl_jax') is None" in install and "pip', 'install'" in install, notebook


def _png_size(path):
  from PIL import Image

  with Image.open(path) as image:
    assert image.format == "PNG"
    return image.size


def test_vision_notebook_trains_evaluates_and_plots(monkeypatch, tmp_path):
  monkeypatch.setenv("VISION_STEPS", "2")
  monkeypatch.setenv("SSL_JAX_REPO", REPO)
  monkeypatch.chdir(tmp_path)
  namespace = _run_notebook("vision.ipynb")
  results = namespace["results"]
  assert results["step"] == 2
  assert set(results["evals"]) == {"linear_probe", "knn"}
  # One panel per logged metric, and the kNN evaluated mid-run (step 1) and at the end.
  titles = [ax.get_title() for ax in namespace["curves"].axes]
  assert titles[:2] == ["loss", "learning_rate"] and "knn/simclr/knn acc (k=20)" in titles
  knn = namespace["curves"].axes[titles.index("knn/simclr/knn acc (k=20)")]
  assert list(knn.get_lines()[0].get_xdata()) == [1, 2]
  # The map: all 540 test digits, one colour per class.
  [ax] = namespace["embedding"].axes
  assert len(ax.collections) == 10
  assert sum(len(c.get_offsets()) for c in ax.collections) == 540
  assert _png_size(namespace["map_png"])[0] > 300 and _png_size(namespace["curves_png"])[0] > 300


def test_language_notebook_trains_a_gpt_and_samples(monkeypatch, tmp_path):
  monkeypatch.setenv("LANGUAGE_STEPS", "4")
  monkeypatch.setenv("SSL_JAX_REPO", REPO)
  monkeypatch.chdir(tmp_path)
  namespace = _run_notebook("language.ipynb")
  results = namespace["results"]
  assert results["step"] == 4
  lm = results["evals"]["causal_lm"]
  model, unigram = lm["causal_lm"], lm["unigram (train token frequencies)"]
  # 4 steps from a uniform start over 500 pieces: a perplexity near the vocabulary size.
  assert 50 < model["perplexity"] < 1000 and 1 < unigram["perplexity"] < 500
  samples = results["evals"]["lm_samples"]
  assert len(samples) == 3
  for sample in samples.values():
    prompt, arrow, continuation = sample["prompt ⟶ continuation"].partition(" ⟶ ")
    assert prompt and arrow and isinstance(continuation, str)
  [loss_ax, lr_ax] = (
    namespace["run_curves"]
    .plot_runs([namespace["workdir"]], metrics=["loss", "learning_rate"])
    .axes
  )
  assert list(loss_ax.get_lines()[0].get_xdata()) == [1, 2, 3, 4]


def test_internalization_notebook_compares_three_methods(monkeypatch, tmp_path):
  monkeypatch.setenv("INTERNALIZE_STEPS", "2")
  monkeypatch.setenv("INTERNALIZE_BUDGETS", "1,0")
  monkeypatch.setenv("SSL_JAX_REPO", REPO)
  monkeypatch.chdir(tmp_path)
  namespace = _run_notebook("internalization.ipynb")
  rows = namespace["record"]["digits"]
  assert list(rows) == ["linear probe", "full fine-tune", "LoRA (rank 4, every conv)"]
  for row in rows.values():
    assert set(row) == {"1/class", "all", "trainable params", "task weights bytes"}
    assert all(0 < row[c]["mean"] <= 100 for c in ("1/class", "all"))
  # The linear probe trains the head alone (8 features x 10 classes + 10), LoRA more, full all.
  params = [row["trainable params"] for row in rows.values()]
  assert params[0] == 90 and params[0] < params[2] < params[1]
  table = namespace["TABLES"]["label_efficiency"](namespace["record"]["digits"])
  assert table.splitlines()[0].startswith("| method | 1/class | all | trainable params")


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
