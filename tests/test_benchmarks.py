"""The benchmark scripts run and write their JSON (what they measure is not asserted here)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.e2e


def test_train_step_benchmark_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  result = subprocess.run(
    [
      sys.executable,
      "benchmarks/train_step.py",
      "--config",
      "configs/simclr_digits.py",
      "--steps",
      "2",
      "--out",
      str(out),
      "--config.model_kwargs.stage_sizes=(1,)",
      "--config.model_kwargs.width=8",
      "--config.batch_size=32",
    ],
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  record = json.loads(out.read_text())
  assert record["batch_size"] == 32 and record["config"] == "simclr"
  assert record["step_seconds_median"] > 0
  assert record["examples_per_second"] == 32 / record["step_seconds_median"]
  assert 0 < record["augment_share_of_step"]


def test_train_step_benchmark_runs_a_text_reference_config_on_synthetic_tokens(tmp_path):
  out = tmp_path / "bench.json"
  result = subprocess.run(
    [
      sys.executable,
      "benchmarks/train_step.py",
      "--config",
      "configs/reference/bert_base_wikipedia.py",
      "--synthetic",
      "--steps",
      "1",
      "--out",
      str(out),
      "--config.model_kwargs.size=tiny",
      "--config.data.seq_len=64",
      "--config.data.vocab_size=500",
      "--config.batch_size=8",
    ],
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  record = json.loads(out.read_text())
  assert record["config"] == "mlm" and record["seq_len"] == 64 and record["dtype"] == "bfloat16"
  assert record["tokens_per_second"] == 64 * record["examples_per_second"]
  assert record["step_tflops"] > 0


@pytest.mark.slow  # Compiles every query strategy in a fresh process: about 90 s on 2 cores.
def test_query_strategy_benchmark_writes_json(tmp_path):
  out = tmp_path / "queries.json"
  result = subprocess.run(
    [
      sys.executable,
      "benchmarks/query_strategies.py",
      "--pool",
      "600",
      "--dim",
      "16",
      "--budget",
      "5",
      "--mc_samples",
      "4",
      "--repeats",
      "1",
      "--out",
      str(out),
    ],
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  record = json.loads(out.read_text())
  assert record["pool"] == 600 and record["budget"] == 5 and record["digits_pool"] == 1797
  assert set(record["seconds"]) >= {"coreset", "badge", "typiclust", "probcover", "batch_bald (10)"}
  assert all(seconds > 0 for seconds in record["seconds"].values())


@pytest.mark.slow  # ResNet-18 in both frameworks: about a minute on 2 cores.
def test_simclr_vs_pytorch_benchmark_writes_json(tmp_path):
  out = tmp_path / "simclr.json"
  result = subprocess.run(
    [
      sys.executable,
      "benchmarks/simclr_vs_pytorch.py",
      "--batch_size=8",
      "--width=8",
      "--steps=1",
      f"--out={out}",
    ],
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr
  record = json.loads(out.read_text())
  assert record["shape"]["batch_size"] == 8 and record["shape"]["width"] == 8
  steps = record["step_seconds"]
  assert record["pytorch_over_ssl_jax"] == steps["pytorch"][0] / steps["ssl_jax"][0]
  assert 0 < record["ssl_jax_augmentation_seconds_median"] < record["ssl_jax_step_seconds_median"]


def test_llama_vs_pytorch_benchmark_writes_json(tmp_path):
  out = tmp_path / "llama.json"
  result = subprocess.run(
    [
      sys.executable,
      "benchmarks/llama_vs_pytorch.py",
      "--depth=1",
      "--width=32",
      "--heads=4",
      "--kv_heads=2",
      "--mlp_dim=48",
      "--seq_len=16",
      "--batch_size=8",
      "--new_tokens=4",
      "--steps=1",
      f"--out={out}",
    ],
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr
  record = json.loads(out.read_text())
  assert record["shape"]["kv_heads"] == 2 and record["shape"]["new_tokens"] == 4
  for part in ("train_step", "sampling"):
    times = record[part]
    assert (
      times["pytorch_over_ssl_jax"] == times["pytorch_seconds"][0] / times["ssl_jax_seconds"][0]
    )
