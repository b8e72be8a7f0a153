"""Bad input stops the run before any work, naming the bad value and the valid choices."""

import os
import subprocess
import sys

import pytest
from conftest import REPO, tiny_mlm_config, tiny_simclr_config

from ssl_jax import train
from ssl_jax.config_base import validate_config
from ssl_jax.registry import MODELS, ConfigError, Registry, UnknownNameError


def test_registry_lists_names_and_suggests_the_closest():
  with pytest.raises(UnknownNameError) as error:
    MODELS.get("resnt")
  message = str(error.value)
  assert "'resnt'" in message and "resnet18" in message and "Did you mean 'resnet'" in message


def test_registry_rejects_options_the_builder_does_not_take():
  registry = Registry("widget")

  @registry.register("box")
  def box(width: int = 1, height: int = 1):
    return width * height

  assert registry.build("box", {"width": 3, "height": 2}) == 6
  with pytest.raises(ConfigError, match=r"\['hieght'\].*'box'.*\['height', 'width'\].*'height'"):
    registry.build("box", {"hieght": 2})
  with pytest.raises(ValueError, match="already registered"):
    registry.register("box")(lambda: 0)


@pytest.mark.parametrize(
  "overrides, pattern",
  [
    ({"model": "resnt"}, r"Unknown model 'resnt'.*Did you mean 'resnet'"),
    ({"task": "simclr2"}, r"Unknown task 'simclr2'.*'mlm'.*'simclr'"),
    ({"data.name": "digts"}, r"Unknown dataset 'digts'.*Did you mean 'digits'"),
    ({"model_kwargs.widht": 8}, r"\['widht'\].*model 'resnet'.*Did you mean 'width'"),
    ({"task_kwargs.temprature": 0.1}, r"\['temprature'\].*task 'simclr'.*'temperature'"),
    ({"optim.learing_rate": 0.1}, r"\['learing_rate'\].*config.optim.*'learning_rate'"),
    ({"mesh.model": 2}, r"\['model'\].*config.mesh.*\['data', 'fsdp'\]"),
    ({"batch_size": 0}, r"config.batch_size must be positive"),
    (
      {"evals.knn.feature_sets": ("trained", "pixels")},
      r"Unknown feature_sets \['pixels'\].*'raw_pixels'",
    ),
  ],
)
def test_bad_config_values_are_named(overrides, pattern):
  config = tiny_simclr_config(**overrides)
  with pytest.raises(ConfigError, match=pattern):
    validate_config(config)


def test_unknown_top_level_key_and_evaluator():
  config = tiny_simclr_config()
  config.total_stpes = 5
  with pytest.raises(ConfigError, match=r"\['total_stpes'\].*'total_steps'"):
    validate_config(config)
  config = tiny_simclr_config()
  config.evals.kn = {}
  with pytest.raises(ConfigError, match=r"Unknown evaluator 'kn'.*'knn'"):
    validate_config(config)


def test_missing_tokenizer_file_stops_before_any_work(tmp_path):
  config = tiny_mlm_config(**{"data.tokenizer_path": str(tmp_path / "nope.model")})
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=r"tokenizer_path=.*nope.model.*does not exist"):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_task_and_data_modalities_must_match(tmp_path):
  config = tiny_simclr_config(**{"data.name": "python_text"})
  config.data.stdlib_docstrings = False
  with pytest.raises(ConfigError, match="needs image data.*'python_text' is text data"):
    train.train_and_evaluate(config, str(tmp_path))


def _main(*args):
  env = {**os.environ, "PYTHONPATH": REPO}
  return subprocess.run(
    [sys.executable, "-m", "ssl_jax.main", *args],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=env,
    timeout=300,
  )


def test_command_line_errors(tmp_path):
  # An unknown registry name: exit code 2, a one-line error, nothing written.
  result = _main(
    "--config", "configs/simclr_digits.py", "--workdir", str(tmp_path / "a"), "--config.model=resnt"
  )
  assert result.returncode == 2, result.stderr
  assert "Unknown model 'resnt'" in result.stderr and "Did you mean 'resnet'" in result.stderr
  assert not (tmp_path / "a").exists()
  # An override of a key that does not exist is refused while the flags are parsed: one line.
  result = _main(
    "--config",
    "configs/simclr_digits.py",
    "--workdir",
    str(tmp_path / "b"),
    "--config.total_stpes=3",
  )
  assert result.returncode == 2, result.stderr
  assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
  assert "total_stpes" in result.stderr and 'Did you mean "total_steps"' in result.stderr
  assert not (tmp_path / "b").exists()


def test_evaluator_misconfigurations_are_refused_before_training():
  config = tiny_simclr_config()
  config.evals = {"online_probe": {}}
  with pytest.raises(ConfigError, match="config.online_probe=True"):
    validate_config(config)
  config.evals = {"knn": {"feature_sets": ("raw_pixel",)}}
  with pytest.raises(
    ConfigError, match=r"\['raw_pixel'\].*\['trained', 'random_init', 'raw_pixels'\]"
  ):
    validate_config(config)
  config.data = {"name": "tfds", "dataset": "cifar10", "data_dir": "/no/such/tfds"}
  config.evals = {}
  with pytest.raises(ConfigError, match="data_dir='/no/such/tfds' does not exist"):
    validate_config(config)


def test_docs_name_every_registered_part():
  """The table of names in docs/extending.md is how users find the parts; it must not fall
  behind."""
  import re

  from ssl_jax.registry import DATASETS, EVALUATORS, TASKS  # registered by importing train

  with open(os.path.join(REPO, "docs", "extending.md")) as f:
    rows = {
      m.group(1): set(re.findall(r"`(\w+)`", m.group(2)))
      for m in re.finditer(r"^\| `(\w+)[.\w<>]*`[^|]*\|[^|]*\| (.*) \|$", f.read(), re.MULTILINE)
    }
  for key, registry in (
    ("task", TASKS),
    ("model", MODELS),
    ("data", DATASETS),
    ("evals", EVALUATORS),
  ):
    # Parts that tests register for themselves (e.g. a dataset with a NaN) are not shipped.
    shipped = {
      name for name in registry.names() if registry.get(name).__module__.startswith("ssl_jax.")
    }
    assert len(shipped) >= 4 and shipped <= rows[key], (key, shipped - rows[key])


def _run_config(workdir, config_name, *flags):
  """`python -m ssl_jax.main --config configs/<config_name>.py --workdir <workdir> <flags>`."""
  return _main(
    "--config", os.path.join("configs", f"{config_name}.py"), "--workdir", str(workdir), *flags
  )


def _pairing_candidates():
  """Configs of tasks with different capabilities: vision, masked LM, zero-shot."""
  zero_shot = tiny_mlm_config()
  zero_shot.task = "zero_shot"
  zero_shot.task_kwargs = {"init_from": ""}
  return [tiny_simclr_config(), tiny_mlm_config(), zero_shot]


def test_every_evaluator_refuses_a_task_without_its_capability():
  """For each evaluator, a task class lacking one of its declared capabilities is refused by
  validate_config, naming the evaluator, the task, the capability and the tasks that have it."""
  from ssl_jax.capabilities import missing_capabilities, tasks_with
  from ssl_jax.registry import EVALUATORS, TASKS

  for name in EVALUATORS.names():
    required = EVALUATORS.requirements(name)
    assert required, f"evaluator {name!r} declares no capability"
    for config in _pairing_candidates():
      missing = missing_capabilities(TASKS.get(config.task), required)
      if missing:
        break
    else:
      raise AssertionError(f"no candidate task lacks what {name!r} needs")
    config.evals = {name: {}}
    config.online_probe = False
    capability = missing[0].__name__
    with pytest.raises(ConfigError) as error:
      validate_config(config)
    message = str(error.value)
    assert f"Evaluator {name!r}" in message and f"task {config.task!r}" in message, message
    assert capability in message and str(tasks_with(missing[0])) in message, message


def test_online_probe_needs_a_task_that_trains_one():
  config = tiny_mlm_config()
  config.online_probe = True
  with pytest.raises(ConfigError, match=r"config.online_probe=True.*OnlineProbe.*task 'mlm'"):
    validate_config(config)


def test_a_mismatched_pairing_exits_before_any_data_or_checkpoint(tmp_path):
  workdir = tmp_path / "w"
  result = _run_config(workdir, "simclr_digits", '--config.evals={"masked_lm": {}}')
  assert result.returncode == 2, result.stderr
  assert result.stderr.startswith("Error: Evaluator 'masked_lm' needs a task that predicts masked")
  assert "MaskedTokenPredictor" in result.stderr and "['bert_pretraining', 'mlm']" in result.stderr
  assert not workdir.exists()


@pytest.mark.e2e
def test_every_option_of_a_named_part_can_be_set_from_the_command_line(tmp_path):
  """DINO's student_temp is not in configs/dino_digits.py; its default is in the resolved
  config, so the flag is accepted, and config.json records every option."""
  import json

  workdir = tmp_path / "dino"
  flags = ("--config.total_steps=1", "--config.batch_size=16", "--config.evals={}")
  result = _run_config(workdir, "dino_digits", "--config.task_kwargs.student_temp=0.2", *flags)
  assert result.returncode == 0, result.stderr
  written = json.loads((workdir / "config.json").read_text())
  assert written["task_kwargs"]["student_temp"] == 0.2
  assert written["task_kwargs"]["center_momentum"] == 0.9  # a default the file never spelt
  assert written["model_kwargs"]["block"] == "basic"
  typo = _run_config(tmp_path / "typo", "dino_digits", "--config.task_kwargs.student_tmp=0.2")
  assert typo.returncode != 0 and "student_tmp" in typo.stderr
  assert not (tmp_path / "typo").exists()


def test_resolved_defaults_follow_the_part_a_name_override_picks():
  from ssl_jax.config_base import resolve_defaults
  from ssl_jax.config_file import ResolvedConfigFileParser

  parser = ResolvedConfigFileParser(resolve_defaults, name="config", lock_config=False)
  argv = sys.argv
  sys.argv = ["main", "--config.task_kwargs.peft.name=adapter", "--config.task_kwargs.method=peft"]
  try:
    config = parser.parse(os.path.join(REPO, "configs", "classify_python_packages.py"))
  finally:
    sys.argv = argv
  assert config.task_kwargs.peft.to_dict() == {
    "name": "adapter",
    "size": 16,
    "targets": r"(attention/out|mlp_out)$",
  }
  assert config.evals.classification.every == 0
  assert (
    resolve_defaults(config.copy_and_resolve_references()) == config.copy_and_resolve_references()
  )


def test_fine_tuning_options_are_checked_before_any_data(tmp_path):
  from conftest import load_config

  config = load_config("classify_digits")
  config.task_kwargs.init_from = ""
  config.task_kwargs.semi_supervised = {"name": "fixmatch"}
  validate_config(config)  # images have a strong view
  text = load_config("classify_python_packages")
  text.task_kwargs.init_from = ""
  text.data.tokenizer_path = ""
  text.task_kwargs.semi_supervised = {"name": "fixmatch"}
  with pytest.raises(
    ConfigError, match=r"semi_supervised.name='fixmatch' works on \['image'\] inputs, not text"
  ):
    validate_config(text)
  text.task_kwargs.semi_supervised = {"name": "none"}
  text.task_kwargs.peft = {"name": "lorra"}
  with pytest.raises(ConfigError, match=r"Unknown PEFT method 'lorra'.*Did you mean 'lora'"):
    validate_config(text)
  text.task_kwargs.peft = {"name": "lora", "rnak": 4}
  with pytest.raises(ConfigError, match=r"\['rnak'\].*config.task_kwargs.peft.*'rank'"):
    validate_config(text)
  text.task_kwargs.peft = {"name": "lora"}
  text.task_kwargs.method = "lora"
  with pytest.raises(ConfigError, match=r"method 'lora'.*'full', 'linear', 'peft', 'scratch'"):
    validate_config(text)
  text.task_kwargs.method = "full"
  text.task_kwargs.init_from = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="config.json does not exist"):
    validate_config(text)
  text.task_kwargs.init_from = ""
  text.evals = {"knn": {"every": True}}
  with pytest.raises(ConfigError, match=r"config.evals.knn.every=True is a bool; it takes a int"):
    validate_config(text)
