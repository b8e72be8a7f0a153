"""Pre-work checks are declared by each part at registration: option ranges beside their
defaults (`Annotated[..., Range(...)]`), value checks (`check=`), dataset facts (modality,
static splits). Each is refused before any dataset is built."""

from typing import Annotated

import pytest
from conftest import tiny_simclr_config

from ssl_jax import train
from ssl_jax.active.strategies.base import QUERY_STRATEGIES
from ssl_jax.config_base import resolve_defaults, validate_config
from ssl_jax.data.source import Dataset
from ssl_jax.errors import ConfigError, DataError
from ssl_jax.registry import DATASETS, TASKS, Registry
from ssl_jax.rewards.estimators import ESTIMATORS
from ssl_jax.value_checks import OneOf, Range


@pytest.fixture
def no_data(monkeypatch):
  """Every dataset builder fails the test if called: the checks must come first."""
  for name in DATASETS.names():
    entry = DATASETS.get(name)
    monkeypatch.setitem(DATASETS._entries, name, _forbidden(name, entry))


def _forbidden(name, entry):
  def build(*args, **kwargs):
    raise AssertionError(f"dataset {name!r} was built before the checks ran")

  build.__signature__ = __import__("inspect").signature(entry)
  return build


def test_a_declared_range_beside_the_default_is_enforced():
  registry = Registry("part")

  @registry.register("thing")
  def thing(
    beta: Annotated[float, Range(0.0, 1.0, high_open=True)] = 0.5,
    mode: Annotated[str, OneOf(("a", "b"))] = "a",
    width: int = 3,
  ):
    return beta

  registry.validate("thing", {"beta": 0.0, "mode": "b"})
  with pytest.raises(
    ConfigError, match=r"thing\.beta=1\.0 is out of range: it must be in \[0, 1\)"
  ):
    registry.validate("thing", {"beta": 1.0}, where="thing")
  with pytest.raises(ConfigError, match=r"mode='c'; valid: \['a', 'b'\]"):
    registry.validate("thing", {"mode": "c"})
  with pytest.raises(ConfigError, match="width=-1 is out of range"):  # the name rule still holds
    registry.validate("thing", {"width": -1})


def test_names_that_match_no_rule_declare_their_ranges():
  """`beta` and `power` match no name rule: their declarations refuse a bad value."""
  with pytest.raises(ConfigError, match=r"power=-1\.0 is out of range: it must be >= 0"):
    QUERY_STRATEGIES.validate("power_bald", {"power": -1.0})
  with pytest.raises(ConfigError, match=r"purity=1\.5 is out of range: it must be in \(0, 1\]"):
    QUERY_STRATEGIES.validate("probcover", {"purity": 1.5})
  with pytest.raises(ConfigError, match=r"beta=-0\.1 is out of range"):
    TASKS.validate("reward_finetuning", {"beta": -0.1, "init_from": "x"}, num_positional=2)
  with pytest.raises(ConfigError, match=r"kl_estimator='k9'; valid: \['k1', 'k3'\]"):
    ESTIMATORS.validate("grpo", {"kl_estimator": "k9"})


def test_a_declared_value_check_runs_at_validation():
  with pytest.raises(ConfigError, match="feature_sets"):
    config = resolve_defaults(tiny_simclr_config())
    config.evals.knn.feature_sets = ["trained", "nonsense"]
    validate_config(config)


def test_modality_and_splits_are_paired_before_the_data_is_built(no_data, tmp_path):
  config = tiny_simclr_config(**{"data.name": "python_text"})
  with pytest.raises(ConfigError, match="needs image data, but dataset 'python_text' is text"):
    train.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_simclr_config()
  config.evals.knn = {"k": 5, "test_split": "tset"}
  with pytest.raises(ConfigError, match=r"knn reads split\(s\) \['tset'\].*\['train', 'test'\]"):
    train.train_and_evaluate(config, str(tmp_path / "b"))
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_every_dataset_declares_its_modality():
  assert {DATASETS.fact(name, "modality") for name in DATASETS.names()} == {"image", "text"}
  with pytest.raises(
    ValueError, match=r"'silent' must declare modality= one of \['image', 'text'\], not None"
  ):
    DATASETS.register("silent")(lambda workdir=None: None)
  with pytest.raises(ValueError, match=r"not 'audio'"):
    DATASETS.register("sounds", modality="audio")(lambda workdir=None: None)
  assert "silent" not in DATASETS.names() and "sounds" not in DATASETS.names()


def test_an_unknown_split_is_a_data_error():
  dataset = Dataset({"train": {"x": [1, 2]}}, "image")
  with pytest.raises(DataError, match=r"Unknown split 'test'; this dataset has \['train'\]"):
    dataset.split("test")


def test_a_cell_run_twice_registers_again_but_a_second_part_of_the_name_is_refused():
  registry = Registry("part")
  for _ in range(2):  # the same definition twice (a notebook cell re-run)

    @registry.register("p")
    def p():
      return 1

  with pytest.raises(ValueError, match="already registered"):
    registry.register("p")(lambda: 2)
