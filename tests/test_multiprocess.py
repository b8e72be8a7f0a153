"""Two processes on localhost (`jax.distributed.initialize` with a local coordinator, 4 fake CPU
devices each) train, are preempted, resume and evaluate; every number equals one process on 8
devices, and only process 0 writes into the shared workdir."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO

from ssl_jax import train
from ssl_jax.config_file import load_config_file
from ssl_jax.interrupts import AgreedStop

TOTAL_STEPS = 40
SYNC_EVERY = 10  # AgreedStop's default: where a signal to one process stops them all

CONFIG = f"""
from ssl_jax.config_file import load_config_file


def get_config():
  config = load_config_file("configs/simclr_digits.py")
  config.model_kwargs.stage_sizes = (1,)
  config.model_kwargs.width = 8
  config.task_kwargs.projector_hidden_dim = 16
  config.task_kwargs.projector_dim = 8
  config.batch_size = 32
  config.eval_batch_size = 64
  config.total_steps = {TOTAL_STEPS}
  config.log_every = 2
  config.checkpoint_every = 100
  config.optim.warmup_steps = 1
  config.evals.linear_probe.labels_per_class = (1, 0)
  config.evals.linear_probe.draws = 2
  return config
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(config_path, workdir, records, port):
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    "PYTHONPATH": REPO,
  }
  processes = []
  for index in (0, 1):
    command = [
      sys.executable,
      os.path.join(REPO, "tests", "audited_main.py"),
      str(records / f"writes{index}.json"),
      str(workdir),
      f"--config={config_path}",
      f"--workdir={workdir}",
      "--distributed",
      f"--coordinator_address=localhost:{port}",
      "--num_processes=2",
      f"--process_id={index}",
    ]
    log = open(records / f"process{index}.log", "a")
    processes.append(
      subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    )
  return processes


def _wait(processes, timeout=420):
  deadline = time.time() + timeout
  codes = []
  for process in processes:
    try:
      codes.append(process.wait(max(1, deadline - time.time())))
    except subprocess.TimeoutExpired:
      for p in processes:
        p.kill()
      raise
  return codes


def _losses(workdir) -> dict[int, float]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {row["step"]: row["loss"] for row in rows if "loss" in row}


@pytest.mark.e2e
def test_two_processes_preempted_and_resumed_equal_one_process_on_eight_devices(tmp_path):
  config_path = tmp_path / "tiny_simclr.py"
  config_path.write_text(CONFIG)
  records = tmp_path / "records"
  records.mkdir()
  workdir = tmp_path / "two_processes"

  # Interrupted: SIGTERM reaches process 1 only; both stop at the next agreed step.
  processes = _launch(config_path, workdir, records, _free_port())
  log0 = records / "process0.log"  # Process 0 prints the progress lines.
  deadline = time.time() + 300
  while "step 2/" not in (log0.read_text() if log0.exists() else ""):
    assert time.time() < deadline and processes[1].poll() is None, log0.read_text()
    time.sleep(0.2)
  processes[1].send_signal(signal.SIGTERM)
  codes = _wait(processes)
  logs = [(records / f"process{i}.log").read_text() for i in (0, 1)]
  assert codes == [143, 143], logs
  saved = sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())
  assert len(saved) == 1 and saved[0] % SYNC_EVERY == 0 and saved[0] < TOTAL_STEPS, saved
  for log in logs:
    assert f"Interrupted by SIGTERM at step {saved[0]}" in log, log
  interrupted_writes = [json.loads((records / f"writes{i}.json").read_text()) for i in (0, 1)]

  # Resumed by the same command: both processes go on from the saved step to the end.
  codes = _wait(_launch(config_path, workdir, records, _free_port()))
  logs = [(records / f"process{i}.log").read_text() for i in (0, 1)]
  assert codes == [0, 0], logs
  resumed_writes = [json.loads((records / f"writes{i}.json").read_text()) for i in (0, 1)]
  # Process 0 wrote the checkpoints, metrics and results. Process 1 wrote only what Orbax's
  # multi-process save has every process write: its own array metadata, inside the temporary
  # directory of the checkpoint being saved (renamed into place by process 0).
  assert interrupted_writes[0] and resumed_writes[0]
  for write in interrupted_writes[1] + resumed_writes[1]:
    _, path = write.split(" ", 1)
    relative = os.path.relpath(path, os.path.realpath(workdir))
    parts = relative.split(os.sep)
    assert parts[0] == "checkpoints" and parts[1].endswith(".orbax-checkpoint-tmp"), write
    assert parts[-2:] == ["array_metadatas", "process_1"], write

  # One process on the 8 devices of this test process, uninterrupted.
  single = tmp_path / "one_process"
  train.train_and_evaluate(load_config_file(str(config_path)), str(single))
  two, one = _losses(workdir), _losses(single)
  assert sorted(two) == sorted(one) == list(range(2, TOTAL_STEPS + 1, 2))
  np.testing.assert_allclose([two[s] for s in sorted(two)], [one[s] for s in sorted(one)], 1e-5)
  results = [json.loads((d / "results.json").read_text()) for d in (workdir, single)]
  assert results[0]["step"] == results[1]["step"] == TOTAL_STEPS
  assert results[0]["evals"] == results[1]["evals"]


@pytest.mark.e2e
def test_one_process_stops_after_the_step_its_signal_arrived_in():
  class Signals:
    requested = 0

  signals = Signals()
  stop = AgreedStop(signals, every=SYNC_EVERY)
  assert not stop(3)
  signals.requested = signal.SIGTERM
  assert stop(7) and stop.signum == signal.SIGTERM


def _run_alone(tmp_path, process_id: int, timeout: int):
  """One process of a two-process run whose partner never starts."""
  port = _free_port()
  workdir = tmp_path / f"alone{process_id}"
  started = time.monotonic()
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "ssl_jax.main",
      "--config=configs/simclr_digits.py",
      f"--workdir={workdir}",
      "--distributed",
      f"--coordinator_address=localhost:{port}",
      "--num_processes=2",
      f"--process_id={process_id}",
      f"--distributed_timeout={timeout}",
    ],
    cwd=REPO,
    env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO},
    capture_output=True,
    text=True,
    timeout=120,
  )
  return result, time.monotonic() - started, port, workdir


@pytest.mark.e2e
def test_an_unreachable_coordinator_is_one_error_line_within_the_timeout(tmp_path):
  """Process 1 with no coordinator to answer, and process 0 whose partner never joins: each
  ends with one Error line naming the address after --distributed_timeout (not a C++ abort
  minutes later), exit 2, nothing written."""
  for process_id in (1, 0):
    result, seconds, port, workdir = _run_alone(tmp_path, process_id, timeout=3)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert lines[-1].startswith(f"Error: --coordinator_address=localhost:{port}"), lines
    assert "--distributed_timeout=3" in lines[-1]
    assert "Traceback" not in result.stderr and "SIGABRT" not in result.stderr
    assert seconds < 60
    assert not workdir.exists()
