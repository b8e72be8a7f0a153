"""What the fine-tuning parts share (PEFT methods, adversarial training, semi-supervised
objectives): the modalities a part works on, and building one from its config block."""

from __future__ import annotations

import abc
from typing import Any

from ssl_jax.registry import ConfigError, Registry


class Part(abc.ABC):  # noqa: B024  (a base for the modalities check; parts add the methods)
  modalities: tuple[str, ...] = ("image", "text")


def build_part(registry: Registry, block: dict[str, Any], modality: str, where: str) -> Any:
  """The part `block["name"]` names, built with the block's other options, checked against
  the task's modality."""
  options = dict(block)
  name = options.pop("name", "none")
  check_modality(registry, name, modality, where)
  return registry.build(name, options)


def check_modality(registry: Registry, name: str, modality: str, where: str) -> None:
  """Raises ConfigError if part `name` of `registry` does not work on `modality` inputs."""
  modalities = registry.get(name).modalities
  if modality not in modalities:
    valid = [n for n in registry.names() if modality in registry.get(n).modalities]
    raise ConfigError(
      f"{where}.name={name!r} works on {list(modalities)} inputs, not {modality}; "
      f"valid for {modality}: {valid}."
    )
