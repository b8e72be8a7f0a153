"""The ablation sweep runner's argument handling."""

import importlib.util
import os

import pytest
from conftest import REPO, tiny_simclr_config

spec = importlib.util.spec_from_file_location(
  "sweep", os.path.join(REPO, "experiments", "sweep.py")
)
sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sweep)


def test_parse_sweep_reads_python_literals():
  assert sweep.parse_sweep(["task_kwargs.temperature=0.1,0.5", "optim.name=adamw,lars"]) == [
    ("task_kwargs.temperature", [0.1, 0.5]),
    ("optim.name", ["adamw", "lars"]),
  ]
  with pytest.raises(ValueError, match="key=v1,v2"):
    sweep.parse_sweep(["total_steps"])


def test_set_dotted_rejects_unknown_keys():
  config = tiny_simclr_config()
  sweep.set_dotted(config, "task_kwargs.temperature", 0.5)
  assert config.task_kwargs.temperature == 0.5
  with pytest.raises(KeyError, match="temprature"):
    sweep.set_dotted(config, "task_kwargs.temprature", 0.5)


def test_sweep_table_has_a_row_per_point():
  """Three points of one evaluator: three rows, each with its own numbers (they used to merge
  into one row, the last point's)."""
  results = {
    f"task_kwargs.temperature={t}": {
      "evals": {"knn": {"simclr": {"knn acc (k=20)": acc}}},
      "step": 4,
    }
    for t, acc in ((0.1, 0.5), (0.2, 0.625), (0.5, 0.75))
  }
  lines = sweep.sweep_table(results).splitlines()
  assert lines[0] == "| point | knn acc (k=20) |"
  assert lines[2:] == [
    "| task_kwargs.temperature=0.1 · knn: simclr | 50.0 |",
    "| task_kwargs.temperature=0.2 · knn: simclr | 62.5 |",
    "| task_kwargs.temperature=0.5 · knn: simclr | 75.0 |",
  ]
