"""python -m ssl_jax.plot: curves of runs from metrics.jsonl, and an embedding map."""

import json
import os

import numpy as np
import pytest
from conftest import tiny_simclr_config
from PIL import Image

from ssl_jax.errors import DataError, MissingInputError
from ssl_jax.plot import __main__ as plot_main
from ssl_jax.plot import embedding_map, run_curves


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
  """Two 4-step tiny SimCLR runs (seeds 0 and 1) with kNN every 2 steps."""
  from ssl_jax import train

  workdirs = []
  for seed in (0, 1):
    workdir = str(tmp_path_factory.mktemp(f"seed{seed}"))
    config = tiny_simclr_config(seed=seed)
    config.evals = {"knn": {"k": 5, "every": 2}}
    train.train_and_evaluate(config, workdir)
    workdirs.append(workdir)
  return workdirs


def _logged_keys(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {key for line in f for key in json.loads(line) if key != "step"}


def test_curves_have_a_panel_per_metric_and_a_line_per_run(two_runs, tmp_path):
  keys = _logged_keys(two_runs[0]) - {"steps_per_second"}
  assert "knn/simclr/knn acc (k=5)" in keys and "loss" in keys
  figure = run_curves.plot_runs(two_runs, labels=["seed 0", "seed 1"])
  titles = [ax.get_title() for ax in figure.axes]
  assert titles[:2] == ["loss", "learning_rate"]
  assert sorted(titles) == sorted(keys)
  for ax in figure.axes:
    assert len(ax.get_lines()) == 2
  loss_ax = figure.axes[0]
  assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["seed 0", "seed 1"]
  # The plotted points are the logged ones: steps 2 and 4 of the loss.
  logged = [json.loads(line) for line in open(os.path.join(two_runs[1], "metrics.jsonl"))]
  losses = [(r["step"], r["loss"]) for r in logged if "loss" in r]
  x, y = loss_ax.get_lines()[1].get_data()
  assert list(zip(x, y)) == losses
  # The kNN curve: the periodic value at step 2 and the final one at step 4.
  knn_ax = figure.axes[titles.index("knn/simclr/knn acc (k=5)")]
  assert list(knn_ax.get_lines()[0].get_xdata()) == [2, 4]


def _write_metrics(workdir, records):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    f.writelines(json.dumps(record) + "\n" for record in records)
  return str(workdir)


def test_each_run_keeps_one_colour_in_every_panel(tmp_path):
  """Runs whose logged metrics differ: the second run's line has its own colour in a panel the
  first run is missing from, and the legend names both runs."""
  first = _write_metrics(tmp_path / "a", [{"step": 1, "loss": 2.0, "only_a": 1.0}])
  second = _write_metrics(tmp_path / "b", [{"step": 1, "loss": 1.5, "only_b": 3.0}])
  third = _write_metrics(tmp_path / "c", [{"step": 1, "only_b": 4.0}])
  figure = run_curves.plot_runs([first, second, third])
  panels = {ax.get_title(): ax for ax in figure.axes}
  colour = lambda line: line.get_color()
  loss_a, loss_b = panels["loss"].get_lines()
  only_b_b, only_b_c = panels["only_b"].get_lines()
  assert [colour(loss_a), colour(loss_b), colour(only_b_c)] == ["C0", "C1", "C2"]
  assert colour(only_b_b) == colour(loss_b) == "C1"
  assert colour(panels["only_a"].get_lines()[0]) == "C0"
  legend = panels["loss"].get_legend()
  assert [t.get_text() for t in legend.get_texts()] == ["a", "b", "c"]
  assert [h.get_color() for h in legend.legend_handles] == ["C0", "C1", "C2"]
  many = [_write_metrics(tmp_path / f"r{i}", [{"step": 1, "loss": float(i)}]) for i in range(12)]
  colours = [tuple(line.get_color()) for line in run_curves.plot_runs(many).axes[0].get_lines()]
  assert len(set(colours)) == 12


def test_command_writes_a_png_with_the_chosen_panels(two_runs, tmp_path):
  out = str(tmp_path / "fig.png")
  [written] = plot_main.main([*two_runs, "--out", out, "--metrics", "loss,learning_rate"])
  assert written == out
  with Image.open(out) as image:
    assert image.format == "PNG"
    width, height = image.size
  # Two panels side by side in one row (4.6 x 3.3 inches each at 110 dpi).
  assert (width, height) == (round(2 * 4.6 * 110), round(3.3 * 110))


def test_torn_last_line_and_missing_files(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "metrics.jsonl").write_text(
    '{"step": 2, "loss": 3.0}\n{"step": 1, "loss": 4.0, "learning_rate": 0.1}\n{"step": 3, "lo'
  )
  curves = run_curves.read_curves(str(workdir))
  assert list(curves["loss"][0]) == [1, 2] and list(curves["loss"][1]) == [4.0, 3.0]
  with pytest.raises(MissingInputError, match="has no metrics.jsonl"):
    run_curves.read_curves(str(tmp_path / "absent"))
  with pytest.raises(DataError, match=r"No run logged \['accuracy'\]; logged metrics: \['loss', "):
    run_curves.plot_runs([str(workdir)], metrics=["accuracy"])
  (workdir / "metrics.jsonl").write_text("")
  with pytest.raises(DataError, match="holds no logged metric"):
    run_curves.read_curves(str(workdir))


def test_bad_arguments_are_one_error_line(capsys):
  with pytest.raises(SystemExit) as exit_info:
    plot_main.parse_args(["/tmp/w", "--out", "f.png", "--projection", "umap"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("Error: argument --projection: invalid choice")


@pytest.mark.e2e
def test_embedding_map_colours_each_class(two_runs, tmp_path):
  features, labels, names = embedding_map.run_features(two_runs[0], max_points=150, seed=3)
  assert features.shape[0] == 150 == len(labels) and features.ndim == 2
  assert names == [str(c) for c in range(10)]
  points, method = embedding_map.project(features, "pca")
  assert method == "pca" and points.shape == (150, 2)
  # PCA's first axis carries at least as much variance as its second.
  assert points[:, 0].var() >= points[:, 1].var()
  tsne_points, method = embedding_map.project(features, "auto", tsne_limit=1000)
  assert method == "tsne" and tsne_points.shape == (150, 2)
  figure = embedding_map.plot_embedding(tsne_points, labels, names, "map")
  [ax] = figure.axes
  assert len(ax.collections) == len(np.unique(labels))
  assert sum(len(c.get_offsets()) for c in ax.collections) == 150
  out = str(tmp_path / "map.png")
  assert plot_main.main([two_runs[0], "--embedding", "--max_points", "100", "--out", out]) == [out]
  assert os.path.getsize(out) > 0


def test_embedding_map_needs_labels_and_a_known_projection(tmp_path):
  with pytest.raises(
    ValueError, match=r"projection='umap' is not one of \['auto', 'tsne', 'pca'\]"
  ):
    embedding_map.project(np.zeros((5, 3)), "umap")
  with pytest.raises(DataError, match="at least 3 feature rows"):
    embedding_map.project(np.zeros((2, 3)))


@pytest.mark.e2e
def test_embedding_map_of_an_unlabelled_text_run_is_refused(tmp_path):
  from conftest import tiny_mlm_config

  from ssl_jax import train

  workdir = str(tmp_path / "mlm")
  config = tiny_mlm_config(total_steps=2, checkpoint_every=2)
  config.evals = {}
  train.train_and_evaluate(config, workdir)
  with pytest.raises(DataError, match="has no labels to colour a map by"):
    embedding_map.run_features(workdir)
  with pytest.raises(
    DataError, match=r"split='validation' is not in the run's data; its splits: \["
  ):
    embedding_map.run_features(workdir, split="validation")
  # Its curves plot like any run's.
  figure = run_curves.plot_runs([workdir])
  assert [ax.get_title() for ax in figure.axes][:2] == ["loss", "learning_rate"]


def test_command_line_errors_exit_2_with_one_line(two_runs, tmp_path):
  import subprocess
  import sys

  from conftest import REPO

  cases = [
    ([two_runs[0], "--out", str(tmp_path / "fig.jpg")], "--out='"),
    ([str(tmp_path / "absent"), "--out", str(tmp_path / "f.png")], "has no metrics.jsonl"),
    ([two_runs[0], "--out", str(tmp_path / "taken.png")], "cannot write the figure"),
  ]
  (tmp_path / "taken.png").mkdir()  # a directory where the figure would go
  for args, message in cases:
    result = subprocess.run(
      [sys.executable, "-m", "ssl_jax.plot", *args], cwd=REPO, capture_output=True, text=True
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("Error:") and message in lines[0], lines[0]
  assert os.listdir(tmp_path) == ["taken.png"]  # no figure, no temp file left behind
