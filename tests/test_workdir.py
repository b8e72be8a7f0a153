"""What ssl_jax promises about a workdir: damaged checkpoints fall back to the newest intact
one, one run at a time, a resume contract checked before anything is written, a finished run
reported rather than redone."""

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import REPO, tiny_mlm_config, tiny_simclr_config

from ssl_jax import train
from ssl_jax.errors import CheckpointError, ResumeError, WorkdirError
from ssl_jax.runs.checkpoints import Checkpointer
from ssl_jax.runs.lock import LOCK_FILE, STALE_AFTER_SECONDS, WorkdirLock


def _state_leaves(workdir: str, step: int) -> list[np.ndarray]:
  import orbax.checkpoint as ocp

  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return [
    np.asarray(x) for x in __import__("jax").tree.leaves(ocp.StandardCheckpointer().restore(path))
  ]


def _config(**overrides):
  return tiny_simclr_config(**{"total_steps": 6, "keep_checkpoints": 10, "evals": {}, **overrides})


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """An uninterrupted 6-step run, checkpoints at 2, 4 and 6."""
  workdir = str(tmp_path_factory.mktemp("full"))
  train.train_and_evaluate(_config(), workdir)
  return workdir


def _array_files(step_dir: str) -> list[str]:
  return [
    f
    for f in glob.glob(os.path.join(step_dir, "state", "**"), recursive=True)
    if os.path.isfile(f) and f"{os.sep}d{os.sep}" in f
  ]


def _truncate(step_dir):
  for f in _array_files(step_dir):
    open(f, "w").close()


def _cut_in_half(step_dir):
  for f in _array_files(step_dir):
    with open(f, "r+b") as handle:
      handle.truncate(os.path.getsize(f) // 2)


def _delete_metadata(step_dir):
  os.remove(os.path.join(step_dir, "state", "_METADATA"))
  os.remove(os.path.join(step_dir, "state", "manifest.ocdbt"))


def _delete_data_item(step_dir):
  shutil.rmtree(os.path.join(step_dir, "data"))


DAMAGE = {
  "truncated": _truncate,
  "cut_in_half": _cut_in_half,
  "no_metadata": _delete_metadata,
  "no_data_item": _delete_data_item,
}


def _interrupted_copy(full_run: str, target) -> str:
  """The workdir of a run killed after step 4 (checkpoints 2 and 4, its config.json)."""
  for step in ("2", "4"):
    shutil.copytree(os.path.join(full_run, "checkpoints", step), target / "checkpoints" / step)
  shutil.copy(os.path.join(full_run, "config.json"), target / "config.json")
  return str(target)


@pytest.mark.parametrize(
  "damage",
  [d if d == "truncated" else pytest.param(d, marks=pytest.mark.e2e) for d in sorted(DAMAGE)],
)
def test_a_damaged_latest_checkpoint_falls_back_and_ends_bitwise_equal(
  full_run, tmp_path, damage, capsys
):
  workdir = _interrupted_copy(full_run, tmp_path / "run")
  DAMAGE[damage](os.path.join(workdir, "checkpoints", "4"))
  train.train_and_evaluate(_config(), workdir)
  out = capsys.readouterr().out
  assert "the checkpoint of step 4 is damaged" in out
  assert "newest intact checkpoint, step 2: 2 steps after it are lost" in out
  assert "Resumed from the checkpoint of step 2" in out
  assert os.path.isdir(os.path.join(workdir, "checkpoints", "damaged", "4"))
  for saved, resumed in zip(_state_leaves(full_run, 6), _state_leaves(workdir, 6)):
    np.testing.assert_array_equal(saved, resumed)
  steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == sorted(set(steps))


@pytest.mark.e2e
def test_every_checkpoint_damaged_is_one_error_and_nothing_is_deleted(full_run, tmp_path):
  workdir = _interrupted_copy(full_run, tmp_path / "run")
  for step in ("2", "4"):
    _cut_in_half(os.path.join(workdir, "checkpoints", step))
  with pytest.raises(CheckpointError, match=r"Every checkpoint .* is damaged: steps \[4, 2\]"):
    train.train_and_evaluate(_config(), workdir)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints", "damaged"))) == ["2", "4"]
  assert not os.path.exists(os.path.join(workdir, LOCK_FILE))


@pytest.mark.e2e
def test_a_fine_tune_reads_the_newest_intact_pretraining_step_and_leaves_it_in_place(
  full_run, tmp_path, capsys
):
  source = tmp_path / "pretraining"
  shutil.copytree(full_run, source)
  _cut_in_half(str(source / "checkpoints" / "6"))
  checkpoints = Checkpointer(str(source / "checkpoints"), read_only=True)
  step, state = checkpoints.restore_latest_arrays()
  checkpoints.close()
  assert step == 4
  assert "step 6 is damaged" in capsys.readouterr().out
  assert os.path.isdir(source / "checkpoints" / "6")  # another run's workdir: only read
  expected = _state_leaves(full_run, 4)
  import jax

  for saved, restored in zip(expected, jax.tree.leaves(state)):
    np.testing.assert_array_equal(saved, restored)


def test_the_lock_names_its_holder_and_a_dead_holder_is_taken_over(tmp_path, capsys):
  workdir = str(tmp_path / "run")
  with WorkdirLock(workdir) as lock:
    holder = json.load(open(os.path.join(workdir, LOCK_FILE)))
    assert holder["pid"] == os.getpid()
    with pytest.raises(WorkdirError, match=rf"in use by another run \(pid {os.getpid()} on host"):
      WorkdirLock(workdir).__enter__()
    assert lock.held
  assert not os.path.exists(os.path.join(workdir, LOCK_FILE))
  # A lock left by a process that has exited.
  gone = subprocess.Popen([sys.executable, "-c", "pass"])
  gone.wait()
  with open(os.path.join(workdir, LOCK_FILE), "w") as f:
    json.dump({"host": os.uname().nodename, "pid": gone.pid}, f)
  with WorkdirLock(workdir):
    assert json.load(open(os.path.join(workdir, LOCK_FILE)))["pid"] == os.getpid()
  assert f"took over the lock of {os.path.abspath(workdir)} from a run that is gone (pid " in (
    capsys.readouterr().out
  )
  # Another host's lock cannot be checked: refused, with the way out.
  with open(os.path.join(workdir, LOCK_FILE), "w") as f:
    json.dump({"host": "elsewhere", "pid": 1}, f)
  with pytest.raises(WorkdirError, match="host 'elsewhere'.*delete the lock"):
    WorkdirLock(workdir).__enter__()
  # ... unless its heartbeat stopped long ago (a job restarted on another machine).
  silent = time.time() - STALE_AFTER_SECONDS - 60
  os.utime(os.path.join(workdir, LOCK_FILE), (silent, silent))
  with WorkdirLock(workdir):
    assert json.load(open(os.path.join(workdir, LOCK_FILE)))["pid"] == os.getpid()
  assert "(pid 1 on host 'elsewhere', started ?, silent for 11 minutes)" in capsys.readouterr().out


def test_the_live_holder_keeps_its_lock_fresh(tmp_path, monkeypatch):
  from ssl_jax.runs import lock as workdir_module

  monkeypatch.setattr(workdir_module, "HEARTBEAT_SECONDS", 0.05)
  with WorkdirLock(str(tmp_path)) as lock:
    old = time.time() - 3600
    os.utime(lock.path, (old, old))
    time.sleep(0.5)
    assert time.time() - os.path.getmtime(lock.path) < 5


def test_a_second_ctrl_c_exits_at_once_with_130(monkeypatch):
  import signal

  from ssl_jax.interrupts import StopSignals

  exits = []
  monkeypatch.setattr(os, "_exit", exits.append)
  # What SIGINT did before: default_int_handler, or SIG_IGN under a background `cmd &`.
  before = signal.getsignal(signal.SIGINT)
  with StopSignals() as stop:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.1)
    assert stop.requested == signal.SIGINT and exits == []  # the loop saves, then stops
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.1)
  assert exits == [130]
  assert signal.getsignal(signal.SIGINT) is before  # handlers restored


@pytest.mark.e2e
def test_a_damaged_best_checkpoint_falls_back_to_the_previous_best(tmp_path, capsys):
  import jax.numpy as jnp

  from ssl_jax import early_stopping

  best = Checkpointer(str(tmp_path / "best_checkpoint"), 2, async_save=False)
  for step in (3, 5):
    best.save(step, {"w": jnp.full((4,), float(step))}, {})
  _cut_in_half(str(tmp_path / "best_checkpoint" / "5"))
  stopper = early_stopping.EarlyStopping(metric="validation acc", best_value=0.5)
  final = {"w": jnp.zeros((4,))}
  state = train.best_validated_state(best, stopper, final, 7)
  np.testing.assert_array_equal(np.asarray(state["w"]), np.full((4,), 3.0))
  out = capsys.readouterr().out
  assert "step 5 is damaged" in out and "Evaluating the best validated state, step 3" in out
  # Every best damaged: the final state is evaluated, with a warning.
  best = Checkpointer(str(tmp_path / "best_checkpoint"), 2, async_save=False)
  _cut_in_half(str(tmp_path / "best_checkpoint" / "3"))
  assert train.best_validated_state(best, stopper, final, 7) is final
  assert "Evaluating the final state of step 7 instead" in capsys.readouterr().out


def _main_command(workdir: str, *overrides: str) -> list[str]:
  return [
    sys.executable,
    "-m",
    "ssl_jax.main",
    "--config",
    "configs/simclr_digits.py",
    "--workdir",
    workdir,
    "--config.model_kwargs.stage_sizes=(1,)",
    "--config.model_kwargs.width=8",
    "--config.task_kwargs.projector_hidden_dim=16",
    "--config.task_kwargs.projector_dim=8",
    "--config.batch_size=32",
    "--config.eval_batch_size=64",
    "--config.evals={}",
    *overrides,
  ]


@pytest.fixture
def main_env():
  return {**os.environ, "PYTHONPATH": REPO}


def _start_and_wait_for_steps(command, env, steps: int):
  process = subprocess.Popen(
    command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  watchdog = threading.Timer(300, process.kill)
  watchdog.start()
  seen = 0
  for line in process.stdout:
    seen += line.startswith("step ")
    if seen == steps:
      break
  watchdog.cancel()
  return process


@pytest.mark.e2e
def test_a_second_run_on_a_live_workdir_exits_2_naming_the_first(tmp_path, main_env):
  workdir = str(tmp_path / "run")
  command = _main_command(
    workdir, "--config.total_steps=120", "--config.log_every=1", "--config.checkpoint_every=20"
  )
  first = _start_and_wait_for_steps(command, main_env, 3)
  started = time.perf_counter()
  second = subprocess.run(command, cwd=REPO, env=main_env, capture_output=True, text=True)
  elapsed = time.perf_counter() - started
  assert second.returncode == 2, second.stderr
  errors = [line for line in second.stderr.splitlines() if line.startswith("Error:")]
  assert len(errors) == 1 and f"in use by another run (pid {first.pid} on host" in errors[0]
  assert "Traceback" not in second.stderr
  assert elapsed < 60
  remaining, stderr = first.communicate(timeout=300)
  assert first.returncode == 0, stderr
  steps = [json.loads(line)["step"] for line in open(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == list(range(1, 121))
  assert not os.path.exists(os.path.join(workdir, LOCK_FILE))


@pytest.mark.e2e
def test_ctrl_c_saves_a_restorable_checkpoint_and_exits_130(tmp_path, main_env):
  import signal

  workdir = str(tmp_path / "run")
  command = _main_command(
    workdir, "--config.total_steps=300", "--config.log_every=1", "--config.checkpoint_every=1000"
  )
  process = _start_and_wait_for_steps(command, main_env, 4)
  process.send_signal(signal.SIGINT)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 130, stderr
  assert "Traceback" not in stderr
  assert "Interrupted by SIGINT at step" in stderr
  step = int(stderr.split("Interrupted by SIGINT at step ")[1].split(";")[0])
  checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  restored_step, state = checkpoints.restore_latest_arrays()
  checkpoints.close()
  assert restored_step == step and int(state["step"]) == step
  assert not os.path.exists(os.path.join(workdir, LOCK_FILE))


def test_a_changed_vocabulary_is_refused_and_config_json_is_unchanged(tmp_path):
  workdir = str(tmp_path)
  train.train_and_evaluate(tiny_mlm_config(total_steps=2, evals={}), workdir)
  recorded = (tmp_path / "config.json").read_bytes()
  with pytest.raises(ResumeError, match=r"data\.vocab_size 500 -> 400"):
    train.train_and_evaluate(
      tiny_mlm_config(total_steps=2, evals={}, **{"data.vocab_size": 400}), workdir
    )
  assert (tmp_path / "config.json").read_bytes() == recorded
  # A workdir whose record is gone still has the cached tokenizer's settings.
  (tmp_path / "config.json").unlink()
  shutil.rmtree(tmp_path / "checkpoints")
  from ssl_jax.errors import DataError

  with pytest.raises(DataError, match=r"cached tokenizer .*vocab_size 500 -> 400"):
    train.train_and_evaluate(
      tiny_mlm_config(total_steps=2, evals={}, **{"data.vocab_size": 400}), workdir
    )


@pytest.mark.e2e
def test_allowed_changes_are_kept_in_the_history_and_a_finished_run_is_reported(tmp_path, capsys):
  workdir = str(tmp_path)
  constant = {"optim.schedule": "constant", "optim.warmup_steps": 0}
  first = train.train_and_evaluate(_config(total_steps=4, **constant), workdir)
  recorded = (tmp_path / "config.json").read_bytes()
  # The same command again: nothing to train or evaluate.
  capsys.readouterr()
  again = train.train_and_evaluate(_config(total_steps=4, **constant), workdir)
  assert "finished at step 4" in capsys.readouterr().out
  assert again == first and (tmp_path / "config.json").read_bytes() == recorded
  # Asked to, it evaluates again from its last checkpoint (and trains nothing).
  capsys.readouterr()
  reevaluated = train.train_and_evaluate(_config(total_steps=4, **constant), workdir, True)
  assert "Resumed from the checkpoint of step 4" in capsys.readouterr().out
  assert reevaluated["step"] == 4 and reevaluated["evals"] == first["evals"]
  assert (tmp_path / "config.json").read_bytes() == recorded
  # A longer run on a constant schedule continues; the change is recorded.
  longer = train.train_and_evaluate(_config(total_steps=6, log_every=3, **constant), workdir)
  assert longer["step"] == 6
  history = json.load(open(tmp_path / "config.json"))["history"]
  assert history == [
    {
      "resumed_at_step": 4,
      "time": history[0]["time"],
      "changes": {"log_every": [2, 3], "total_steps": [4, 6]},
    }
  ]
  # On a cosine schedule the remaining learning rates would change: refused.
  with pytest.raises(
    ResumeError, match=r"optim\.schedule 'constant' -> 'cosine'.*total_steps 6 -> 8"
  ):
    train.train_and_evaluate(_config(total_steps=8), workdir)


def _write_error_inputs(root) -> dict[str, list[str]]:
  """Each anticipated mistake, as the command-line arguments that make it."""
  from PIL import Image

  (root / "empty.txt").write_text("")
  (root / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
  (root / "labels.csv").write_text("text,label\nhello world,a\nno label here,\nmore text,b\n")
  (root / "labels.jsonl").write_text(
    '{"text": "a b", "label": "x"}\n{"text": "c d", "label": null}\n'
  )
  (root / "broken.model").write_bytes(b"\x08\x01not a sentencepiece model")
  for name in ("a", "b"):
    (root / "images" / name).mkdir(parents=True)
    for i in range(2):
      Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / name / f"{i}.png")
  (root / "images" / "b" / "corrupt.png").write_bytes(b"\x89PNG but not really")
  (root / "a_file").write_text("")
  text = ["--config", "configs/bert_python_text.py", "--config.data.name=text_files"]
  labelled = [
    "--config",
    "configs/classify_python_packages.py",
    "--config.data.name=text_classification_files",
    "--config.task_kwargs.method=scratch",
    "--config.task_kwargs.init_from=",
  ]
  digits = ["--config", "configs/simclr_digits.py"]
  return {
    "negative learning rate": digits + ["--config.optim.learning_rate=-0.001"],
    "rate out of its interval": digits + ["--config.label_budget.per_class=-2"],
    "unknown key": digits + ["--config.optim.learning_rat=0.1"],
    "empty text file": text + [f"--config.data.paths={root / 'empty.txt'}"],
    "invalid utf-8": text + [f"--config.data.paths={root / 'latin1.txt'}"],
    "corrupt tokenizer": [
      "--config",
      "configs/bert_python_text.py",
      f"--config.data.tokenizer_path={root / 'broken.model'}",
    ],
    "empty csv label": labelled + [f"--config.data.paths={root / 'labels.csv'}"],
    "null jsonl label": labelled + [f"--config.data.paths={root / 'labels.jsonl'}"],
    "corrupt image": digits
    + ["--config.data.name=image_folder", f"--config.data.path={root / 'images'}"],
    "missing init_from": [
      "--config",
      "configs/classify_python_packages.py",
      f"--config.task_kwargs.init_from={root / 'nowhere'}",
    ],
    "workdir is a file": digits + ["--workdir", str(root / "a_file")],
    "workdir cannot be created": digits + ["--workdir", "/proc/ssl_jax_workdir"],
  }


EXPECTED = {
  "negative learning rate": "config.optim.learning_rate=-0.001 is out of range: it must be > 0",
  "rate out of its interval": "config.label_budget.per_class=-2 is out of range",
  "unknown key": "names a key the config does not have: 'learning_rat'",
  "empty text file": "No non-empty documents",
  "invalid utf-8": "latin1.txt is not UTF-8 text",
  "corrupt tokenizer": "broken.model' cannot be read as a sentencepiece model",
  "empty csv label": "labels.csv:3 has an empty label",
  "null jsonl label": "labels.jsonl:2 has a null label",
  "corrupt image": "1 image files cannot be read: ",
  "missing init_from": "nowhere/config.json does not exist",
  "workdir is a file": "a_file' is a file, not a directory",
  "workdir cannot be created": "'/proc/ssl_jax_workdir' cannot be written",
}


@pytest.mark.e2e
def test_each_anticipated_error_is_one_line_exit_2_and_touches_nothing(tmp_path, main_env):
  cases = _write_error_inputs(tmp_path)
  assert set(cases) == set(EXPECTED)
  workdir = str(tmp_path / "workdir")
  for name, arguments in cases.items():
    if "--workdir" not in arguments:
      arguments = arguments + ["--workdir", workdir]
    before = sorted(os.listdir(tmp_path))
    result = subprocess.run(
      [sys.executable, "-m", "ssl_jax.main", *arguments],
      cwd=REPO,
      env=main_env,
      capture_output=True,
      text=True,
      timeout=300,
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 2, (name, result.stderr[-2000:])
    assert len(errors) == 1 and EXPECTED[name] in errors[0], (name, errors)
    assert "Traceback" not in result.stderr, (name, result.stderr[-2000:])
    assert sorted(os.listdir(tmp_path)) == before, name  # no workdir made, nothing changed


def test_resume_and_checkpoint_errors_from_the_command_line(full_run, tmp_path, main_env):
  workdir = tmp_path / "run"
  shutil.copytree(full_run, workdir)
  recorded = (workdir / "config.json").read_bytes()
  changed = subprocess.run(
    _main_command(str(workdir), "--config.model_kwargs.width=16"),
    cwd=REPO,
    env=main_env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert changed.returncode == 2 and "Traceback" not in changed.stderr
  error = [line for line in changed.stderr.splitlines() if line.startswith("Error:")]
  assert len(error) == 1 and "model_kwargs.width 8 -> 16" in error[0]
  assert (workdir / "config.json").read_bytes() == recorded
  for step in ("2", "4", "6"):
    _cut_in_half(str(workdir / "checkpoints" / step))
  (workdir / "results.json").unlink()
  damaged = subprocess.run(
    _main_command(
      str(workdir),
      "--config.total_steps=6",
      "--config.log_every=2",
      "--config.checkpoint_every=2",
      "--config.optim.warmup_steps=1",
      "--config.keep_checkpoints=10",
    ),
    cwd=REPO,
    env=main_env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert damaged.returncode == 2, damaged.stderr[-2000:]
  error = [line for line in damaged.stderr.splitlines() if line.startswith("Error:")]
  assert len(error) == 1 and "Every checkpoint" in error[0] and "steps [6, 4, 2]" in error[0]
  assert "Traceback" not in damaged.stderr, damaged.stderr


@pytest.mark.e2e
def test_a_failed_save_names_the_directory_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  import errno

  import orbax.checkpoint as ocp

  save = ocp.CheckpointManager.save

  def disk_full_after_step_2(self, step, *args, **kwargs):
    if step > 2:  # the file system fills up (a fault injected at the Orbax boundary)
      raise OSError(errno.ENOSPC, "No space left on device")
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", disk_full_after_step_2)
  workdir = str(tmp_path)
  with pytest.raises(
    CheckpointError,
    match=r"step 4 to \S+/checkpoints: \[Errno 28\] No space left on device\. The intact "
    r"checkpoints are steps \[2\]",
  ):
    train.train_and_evaluate(_config(total_steps=4), workdir)
  monkeypatch.undo()
  checkpoints = Checkpointer(os.path.join(workdir, "checkpoints"), read_only=True)
  step, state = checkpoints.restore_latest_arrays()
  checkpoints.close()
  assert step == 2 and int(state["step"]) == 2
  assert not os.path.exists(os.path.join(workdir, LOCK_FILE))


def test_options_added_to_ssl_jax_since_a_run_was_written_are_not_changes():
  from ssl_jax.config_base import resolve_defaults, with_new_defaults
  from ssl_jax.registry import TASKS
  from ssl_jax.runs.record import RunRecord, check_resume, config_dict

  config = resolve_defaults(_config())
  simclr = TASKS.get("simclr")
  written_by_an_older_version = config_dict(config)
  del written_by_an_older_version["optim"]["clip_norm"]  # options it did not have yet
  del written_by_an_older_version["model_kwargs"]["stem"]
  del written_by_an_older_version["online_probe"]
  assert check_resume(written_by_an_older_version, config, simclr, with_new_defaults) == {}
  old_record = {"fingerprint": "older", "config": written_by_an_older_version}
  record = RunRecord.of(config, with_new_defaults)
  assert record.differences(old_record) == {}
  # Without the schema's defaults, the options added since read as changes.
  assert "optim.clip_norm" in RunRecord.of(config, dict).differences(old_record)
  written_by_an_older_version["seed"] = 3
  with pytest.raises(ResumeError, match=r"seed 3 -> 0"):
    check_resume(written_by_an_older_version, config, simclr, with_new_defaults)
  assert record.differences(old_record) == {"seed": (3, 0)}


def test_data_that_changed_under_a_run_is_refused():
  from ssl_jax.runs.record import check_data_facts

  recorded = {"dataset_info": {"num_classes": 2, "class_names": ["a", "b"], "vocab_size": 500}}
  check_data_facts(recorded, {"num_classes": 2, "class_names": ["a", "b"], "vocab_size": 500})
  with pytest.raises(ResumeError, match=r"class_names \['a', 'b'\] -> \['a', 'c'\]"):
    check_data_facts(recorded, {"num_classes": 2, "class_names": ["a", "c"], "vocab_size": 500})
  with pytest.raises(ResumeError, match=r"vocab_size 500 -> 400"):
    check_data_facts(recorded, {"num_classes": 2, "class_names": ["a", "b"], "vocab_size": 400})


def test_a_background_write_that_fails_is_reported_when_waited_for(tmp_path, monkeypatch):
  import errno

  import jax.numpy as jnp

  checkpoints = Checkpointer(str(tmp_path / "checkpoints"))
  checkpoints.save(1, {"w": jnp.ones((2,))}, {})
  checkpoints.wait()

  def permission_denied():
    raise OSError(errno.EACCES, "Permission denied")

  checkpoints.save(2, {"w": jnp.ones((2,))}, {})
  checkpoints.wait()
  monkeypatch.setattr(checkpoints.manager, "wait_until_finished", permission_denied)
  with pytest.raises(CheckpointError, match=r"step 2 to \S+/checkpoints: \[Errno 13\] Permission"):
    checkpoints.wait()


def test_a_run_saved_over_8_devices_is_read_on_one(simclr_workdir):
  # What a fine-tune or active learning does with a pretraining made on another topology.
  script = (
    "from ssl_jax.runs.checkpoints import Checkpointer\n"
    f"c = Checkpointer({os.path.join(simclr_workdir, 'checkpoints')!r}, read_only=True)\n"
    "step, state = c.restore_latest_arrays()\n"
    "print(step, int(state['step']))\n"
  )
  env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  done = subprocess.run(
    [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split()[-2:] == ["4", "4"]


def test_only_unretrieved_checkpoint_read_failures_are_silenced(caplog):
  import logging

  from ssl_jax.runs import checkpoints as checkpoint

  checkpoint._ignore_closed_loop_callbacks()
  logger = logging.getLogger("asyncio")

  def log(message, error):
    try:
      raise error
    except ValueError:
      logger.error(message, exc_info=True)

  with caplog.at_level(logging.ERROR, logger="asyncio"):
    log("Task exception was never retrieved\nfuture: <Task>", ValueError("tensorstore: bad"))
    log("Task exception was never retrieved\nfuture: <Task>", ValueError("something else"))
    log("Exception in callback", ValueError("tensorstore: bad"))
  assert [r.getMessage().splitlines()[0] for r in caplog.records] == [
    "Task exception was never retrieved",
    "Exception in callback",
  ]
  assert "something else" in caplog.text and caplog.text.count("tensorstore") == 1
