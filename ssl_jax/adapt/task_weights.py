"""What a fine-tune has to ship: only the parameters it trained (the head, the adapters or
prompts, any unfrozen layers), saved alone beside a pointer to the pretraining checkpoint that
supplies everything else. A LoRA or prompt-tuned classifier is then kilobytes on disk, and a
full fine-tune the whole network: the number the docs' tables give as "task weights".

  <directory>/task_weights.json   {"base_checkpoint": ..., "paths": [...], "parameters": n}
  <directory>/weights/            Orbax (written atomically) nested {name: ...: array}
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from ssl_jax.adapt.freeze import TRAINABLE, leaf_paths
from ssl_jax.files import write_json

PyTree = Any


def trained_leaves(params: PyTree, labels: PyTree) -> dict[str, Any]:
  """{"/"-joined path: leaf} of the leaves labelled trainable."""
  return {
    path: leaf
    for path, leaf, label in zip(
      jax.tree.leaves(leaf_paths(params)), jax.tree.leaves(params), jax.tree.leaves(labels)
    )
    if label == TRAINABLE
  }


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
  nested: dict[str, Any] = {}
  for path, leaf in flat.items():
    *parents, name = path.split("/")
    node = nested
    for parent in parents:
      node = node.setdefault(parent, {})
    node[name] = leaf
  return nested


def directory_bytes(directory: str) -> int:
  return sum(
    os.path.getsize(os.path.join(root, name))
    for root, _, names in os.walk(directory)
    for name in names
  )


def save_task_weights(
  directory: str, params: PyTree, labels: PyTree, base_checkpoint: str | None
) -> dict[str, Any]:
  """Writes the trainable leaves of `params`; returns {"path", "bytes", "parameters"}."""
  directory = os.path.abspath(directory)
  flat = {
    path: np.asarray(leaf) for path, leaf in trained_leaves(jax.device_get(params), labels).items()
  }
  os.makedirs(directory, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(directory, "weights"), _nest(flat), force=True)
  checkpointer.wait_until_finished()
  parameters = int(sum(leaf.size for leaf in flat.values()))
  write_json(
    os.path.join(directory, "task_weights.json"),
    {"base_checkpoint": base_checkpoint, "paths": sorted(flat), "parameters": parameters},
  )
  return {"path": directory, "bytes": directory_bytes(directory), "parameters": parameters}


def load_task_weights(directory: str, params: PyTree) -> PyTree:
  """`params` (e.g. freshly initialised, with the pretrained weights loaded) with the saved
  leaves put back; a saved leaf with no place in `params`, or of another shape, is an error."""
  index = os.path.join(directory, "task_weights.json")
  if not os.path.isfile(index):
    raise FileNotFoundError(f"No task weights in {directory!r}: {index} is missing.")
  restored = ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(directory), "weights"))
  flat: dict[str, Any] = {}

  def walk(node, prefix):
    for name, child in node.items():
      path = f"{prefix}/{name}" if prefix else name
      if isinstance(child, dict):
        walk(child, path)
      else:
        flat[path] = child

  walk(restored, "")
  paths = jax.tree.leaves(leaf_paths(params))
  missing = sorted(set(flat) - set(paths))
  if missing:
    raise KeyError(f"Task weights {missing[:5]} have no place in these params.")
  leaves = []
  for path, leaf in zip(paths, jax.tree.leaves(params)):
    if path in flat:
      if np.shape(flat[path]) != np.shape(leaf):
        raise ValueError(
          f"Task weight {path!r} has shape {np.shape(flat[path])}; the params "
          f"have {np.shape(leaf)}."
        )
      leaf = np.asarray(flat[path], np.asarray(leaf).dtype)
    leaves.append(leaf)
  return jax.tree.unflatten(jax.tree.structure(params), leaves)
