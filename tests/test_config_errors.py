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
  # An override of a key that does not exist is refused by the flag parser itself.
  result = _main(
    "--config",
    "configs/simclr_digits.py",
    "--workdir",
    str(tmp_path / "b"),
    "--config.total_stpes=3",
  )
  assert result.returncode != 0
  assert "total_stpes" in result.stderr
  assert not (tmp_path / "b").exists()


def test_evaluator_misconfigurations_are_refused_before_training():
  config = tiny_simclr_config()
  config.evals = {"online_probe": {}}
  with pytest.raises(ConfigError, match="config.online_probe=True"):
    validate_config(config)
  config.evals = {"fine_tune": {"feature_sets": ("raw_pixels",)}}
  with pytest.raises(ConfigError, match=r"\['raw_pixels'\].*\['trained', 'random_init'\]"):
    validate_config(config)
  config.data = {"name": "tfds", "dataset": "cifar10", "data_dir": "/no/such/tfds"}
  config.evals = {}
  with pytest.raises(ConfigError, match="data_dir='/no/such/tfds' does not exist"):
    validate_config(config)


def test_readme_names_every_registered_part():
  """The README's table of names is how users find the parts; it must not fall behind."""
  import re

  from ssl_jax.registry import DATASETS, EVALUATORS, TASKS  # registered by importing train

  with open(os.path.join(REPO, "README.md")) as f:
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
