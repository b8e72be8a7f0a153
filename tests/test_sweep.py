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
