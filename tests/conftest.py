"""Test setup: 8 fake CPU devices (set before jax is imported) and a shared compilation cache."""

import os
import sys

# Two pytest workers each run 8 fake devices on 2 cores: a device thread can then wait past
# XLA's 40-second limit for a collective's other participants (seen with two workers running
# the same program in lockstep), and XLA aborts the process; the limit is raised for tests.
os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "")
  + " --xla_force_host_platform_device_count=8"
  + " --xla_cpu_collective_call_terminate_timeout_seconds=300"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Identical programs compiled by different tests (and their subprocesses) hit the disk cache,
# which lives outside the repository (compiled XLA is machine- and version-specific).
CACHE_DIR = os.path.join(
  os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ssl_jax", "jax_compilation"
)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", CACHE_DIR)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import importlib.util  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str):
  """get_config() of configs/<name>.py."""
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


# A worker process that dies is not a test failure, so its test runs once more on a fresh
# worker; a test that crashes twice fails, and a failed assertion is never retried. The crash
# output stays in the log. (The aborts seen in CI were XLA:CPU's multi-device launch deadlock
# with more than 32 steps in flight, fixed by the bound in ssl_jax/loop.py.)
_CRASHED: set[str] = set()


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
  if crashitem in _CRASHED:
    return
  _CRASHED.add(crashitem)
  print(f"\nWorker crashed in {crashitem}; running it once more:\n{report.longrepr}", flush=True)
  sched.mark_test_pending(crashitem)
  report.outcome = "rerun"


def pytest_report_teststatus(report, config):
  if report.outcome == "rerun":
    return "rerun", "R", ("RERUN", {"yellow": True})
  return None


def override(config, overrides: dict):
  """Sets dotted keys, like --config.a.b=v on the command line."""
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


def tiny_simclr_config(**overrides):
  """The shipped SimCLR config shrunk to a width-8 one-stage ResNet and a few steps."""
  config = load_config("simclr_digits")
  config.model_kwargs.stage_sizes = (1,)
  config.model_kwargs.width = 8
  config.task_kwargs.projector_hidden_dim = 16
  config.task_kwargs.projector_dim = 8
  config.batch_size = 32
  config.eval_batch_size = 64
  config.total_steps = 4
  config.log_every = 2
  config.checkpoint_every = 2
  config.optim.warmup_steps = 1
  config.evals.linear_probe.labels_per_class = (1, 0)
  config.evals.linear_probe.draws = 2
  return override(config, overrides)


def tiny_mlm_config(**overrides):
  """The shipped MLM config on the pydoc topics only, a 1-block width-32 encoder, few steps."""
  config = load_config("bert_python_text")
  config.model_kwargs.width = 32
  config.model_kwargs.depth = 1
  config.model_kwargs.num_heads = 2
  config.model_kwargs.mlp_dim = 64
  config.data.seq_len = 32
  config.data.vocab_size = 500
  config.data.stdlib_docstrings = False
  config.batch_size = 16
  config.eval_batch_size = 32
  config.total_steps = 4
  config.log_every = 2
  config.checkpoint_every = 2
  config.optim.warmup_steps = 1
  return override(config, overrides)


@pytest.fixture(scope="session")
def devices():
  assert len(jax.devices()) == 8, "tests expect 8 fake CPU devices"
  return jax.devices()


def tiny_gpt_config(**overrides):
  """The shipped GPT config on the pydoc topics, a 1-block width-32 decoder, 2 steps."""
  config = load_config("gpt_python_text")
  config.model_kwargs.update(dict(width=32, depth=1, num_heads=2, mlp_dim=64))
  config.data.update(dict(seq_len=48, vocab_size=500, stdlib_docstrings=False))
  config.batch_size, config.eval_batch_size = 16, 32
  config.total_steps, config.log_every, config.checkpoint_every = 2, 2, 2
  config.evals = {}
  config.optim.warmup_steps = 1
  return override(config, overrides)


def shared_run(tmp_path_factory, worker_id: str, name: str, make_config) -> str:
  """The workdir of a finished run of `make_config()`, trained once per test session and read
  by every xdist worker (built under a file lock in the session's shared temporary directory;
  the first worker to ask trains it, the others wait and reuse it). Tests only read it."""
  import filelock

  from ssl_jax import train

  base = tmp_path_factory.getbasetemp()
  root = base if worker_id == "master" else base.parent  # popen-gw<k>'s parent: the session's
  workdir = root / f"shared_{name}"
  with filelock.FileLock(str(workdir) + ".lock"):
    if not (workdir / "results.json").exists():
      train.train_and_evaluate(make_config(), str(workdir))
  return str(workdir)


@pytest.fixture(scope="session")
def simclr_workdir(tmp_path_factory, worker_id):
  """A finished 4-step tiny SimCLR run (width-8 one-stage ResNet): config.json and checkpoints,
  the pretraining that image fine-tuning, active learning and plots start from."""
  return shared_run(tmp_path_factory, worker_id, "simclr", lambda: tiny_simclr_config(evals={}))


@pytest.fixture(scope="session")
def mlm_workdir(tmp_path_factory, worker_id):
  """A finished 4-step tiny MLM run on the pydoc topics (config.json, tokenizer, checkpoint)."""
  return shared_run(tmp_path_factory, worker_id, "mlm", lambda: tiny_mlm_config(evals={}))


@pytest.fixture(scope="session")
def gpt_workdir(tmp_path_factory, worker_id):
  """A finished 2-step tiny causal LM on the pydoc topics: what text fine-tunes, zero-shot
  scoring and the classifier reward start from."""
  return shared_run(tmp_path_factory, worker_id, "gpt", tiny_gpt_config)


def trained_steps(config, steps: int = 2):
  """((params, model_state) after `train.setup`, the same after `steps` train steps on the
  first batch, the last step's metrics), all on the host."""
  from ssl_jax import parallel, train

  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
    start = jax.device_get((run.state.params, run.state.model_state))
    state = run.state
    for _ in range(steps):
      state, metrics = run.train_step(state, run.example)
  return start, jax.device_get((state.params, state.model_state)), jax.device_get(metrics)


def trees_equal(a, b) -> bool:
  """Bitwise equality of two pytrees' leaves."""
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def checkpoint_variables(workdir: str) -> dict:
  """{"params", "model_state"} of a run's latest checkpoint (numpy), read as fine-tuning does."""
  from ssl_jax.runs.checkpoints import Checkpointer

  checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  _, state = checkpoints.restore_latest_arrays()
  checkpoints.close()
  return {"params": state["params"], "model_state": state.get("model_state") or {}}
