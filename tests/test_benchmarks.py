"""The benchmark scripts run and write their JSON (what they measure is not asserted here)."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_train_step_benchmark_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  result = subprocess.run(
      [sys.executable, "benchmarks/train_step.py", "--config", "configs/simclr_digits.py",
       "--steps", "2", "--out", str(out), "--config.model_kwargs.stage_sizes=(1,)",
       "--config.model_kwargs.width=8", "--config.batch_size=32"],
      cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr
  record = json.loads(out.read_text())
  assert record["batch_size"] == 32 and record["config"] == "simclr"
  assert record["step_seconds_median"] > 0
  assert record["examples_per_second"] == 32 / record["step_seconds_median"]
  assert 0 < record["augment_share_of_step"]
