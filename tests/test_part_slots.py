"""One declared slot list per schema, walked by one resolver and one validator
(`ssl_jax.part_slots`): the four forms on a toy registry, and both real schemas on it."""

from typing import Annotated

import ml_collections
import pytest

from ssl_jax import part_slots
from ssl_jax.active import schema
from ssl_jax.config_base import DATA_SLOT, EVALS_SLOT, trainer_slots
from ssl_jax.errors import ConfigError
from ssl_jax.part_slots import BLOCK, MAP, NAME, PAIR, Slot
from ssl_jax.registry import DATASETS, Registry, UnknownNameError
from ssl_jax.value_checks import Range

WIDGETS = Registry("widget")


@WIDGETS.register("spin")
def spin(speed: Annotated[float, Range(0.0, 10.0)] = 1.0, label: str = "a"):
  return speed, label


@WIDGETS.register("stop")
def stop():
  return None


SLOTS = (
  Slot("", "widget", WIDGETS, PAIR),
  Slot("", "spare", WIDGETS, PAIR, optional=True),
  Slot("parts", "block", WIDGETS, BLOCK, default_name="spin"),
  Slot("parts", "many", WIDGETS, MAP, extras={"weight": 1.0}, extra_ranges={"weight": Range(0)}),
  Slot("parts", "only", WIDGETS, NAME),
)


def _config(**parts):
  return ml_collections.ConfigDict(
    {
      "widget": "spin",
      "widget_kwargs": {"speed": 3.0},
      "spare": "",
      "parts": {"only": "stop", **parts},
    }
  )


def test_the_resolver_fills_every_form_and_keeps_set_values():
  config = _config(many={"spin": {"label": "b"}, "stop": None})
  part_slots.fill_defaults(config, SLOTS)
  assert config.to_dict() == {
    "widget": "spin",
    "widget_kwargs": {"speed": 3.0, "label": "a"},
    "spare": "",  # optional and empty: no part, no options
    "parts": {
      "block": {"name": "spin", "speed": 1.0, "label": "a"},  # the default part
      "many": {"spin": {"label": "b", "weight": 1.0, "speed": 1.0}, "stop": {"weight": 1.0}},
      "only": "stop",
    },
  }
  part_slots.validate(config, SLOTS)  # and the filled config is valid


@pytest.mark.parametrize(
  "change, message",
  [
    ({"widget": "spn"}, r"Unknown widget 'spn'.*Did you mean 'spin'"),
    (
      {"widget_kwargs": {"sped": 1.0}},
      r"\['sped'\] for widget 'spin' in config.widget_kwargs.*\['label', 'speed'\]",
    ),
    (
      {"parts": {"block": {"name": "spin", "speed": 11.0}}},
      r"config.parts.block.speed=11.0 .*\[0, 10\]",
    ),
    ({"parts": {"block": 5}}, r"config.parts.block is a block \{'name'.*\['spin', 'stop'\]; got 5"),
    ({"parts": {"only": None}}, r"config.parts.only must name one of \['spin', 'stop'\]; got None"),
    ({"widget": ""}, r"config.widget must name one of \['spin', 'stop'\]; got ''"),
    ({"parts": {"many": {"spin": 2}}}, r"config.parts.many.spin must be a block of options, got 2"),
    ({"parts": {"many": ["spin"]}}, r"config.parts.many maps names of \['spin', 'stop'\]"),
    ({"parts": {"many": {"stop": {"weight": -1.0}}}}, r"config.parts.many.stop.weight=-1.0 .*>= 0"),
    ({"parts": {"many": {"stop": {"weight": "x"}}}}, r"weight='x' is a str; it takes a float"),
    ({"parts": {"only": "go"}}, r"Unknown widget 'go'"),
    ({"spare": "spinn"}, r"Unknown widget 'spinn'"),
  ],
)
def test_the_validator_names_the_bad_value_in_every_form(change, message):
  config = _config()
  config.update(change)
  part_slots.fill_defaults(config, SLOTS)
  with pytest.raises((ConfigError, UnknownNameError), match=message):
    part_slots.validate(config, SLOTS)


def test_options_that_are_not_a_block_are_named_not_a_traceback():
  config = ml_collections.ConfigDict(
    {"widget": "spin", "widget_kwargs": 5, "spare": "", "parts": {"only": "stop"}}
  )
  part_slots.fill_defaults(config, SLOTS)  # leaves what it cannot fill to the validator
  with pytest.raises(ConfigError, match=r"config.widget_kwargs must be a block of options, got 5"):
    part_slots.validate(config, SLOTS)


def test_both_schemas_fill_the_data_block_through_the_same_slot():
  expected = {"name": "synthetic", **DATASETS.option_defaults("synthetic", num_positional=1)}
  trainer = ml_collections.ConfigDict({"task": "simclr", "data": {"name": "synthetic"}})
  part_slots.fill_defaults(trainer, trainer_slots(trainer))
  active = ml_collections.ConfigDict(
    {"data": {"name": "synthetic"}, "active": {"strategy": "bald"}}
  )
  schema.fill_defaults(active)
  assert trainer.data.to_dict() == active.data.to_dict() == expected
  assert DATA_SLOT in trainer_slots(trainer) and DATA_SLOT in schema.SLOTS
  assert EVALS_SLOT.extras == {"every": 0}
  assert active.active.strategy_kwargs.to_dict() == {}  # BALD takes no options
