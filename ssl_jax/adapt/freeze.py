"""Which parameters a fine-tune trains, and at what learning rate, as optax partitions.

Freezing labels every leaf "trainable" or "frozen" and gives the frozen ones
`optax.set_to_zero()` through `optax.multi_transform`, so their updates are exactly zero (no
weight decay either) and they stay bitwise equal to the pretrained weights. Layer-wise
learning-rate decay (BEiT, ELECTRA) labels each leaf with its depth and scales that group's
updates by decay ** (depth of the top - depth of the leaf).

Strategies (`freeze=`):
  "none"            train everything;
  "all_but_head"    train only the parameters under the head (a linear probe, end to end);
  "top_blocks:K"    train the head and the last K blocks (`block_<i>`);
  "regex:PATTERN"   freeze every parameter whose "/"-joined path matches PATTERN.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import optax

from ssl_jax.registry import ConfigError

PyTree = Any
TRAINABLE, FROZEN = "trainable", "frozen"
STRATEGIES = ("none", "all_but_head", "top_blocks:K", "regex:PATTERN")
_BLOCK = re.compile(r"(?:^|/)block_(\d+)(?:/|$)")


def leaf_paths(params: PyTree) -> PyTree:
  """The tree of "/"-joined key paths ("encoder/block_0/mlp_in/kernel")."""
  return jax.tree_util.tree_map_with_path(
    lambda path, _: "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path), params
  )


def num_blocks(params: PyTree) -> int:
  """1 + the largest `block_<i>` index in the paths (0 if there are no blocks)."""
  indices = [
    int(m.group(1))
    for path in jax.tree.leaves(leaf_paths(params))
    for m in [_BLOCK.search(path)]
    if m
  ]
  return max(indices) + 1 if indices else 0


def freeze_labels(params: PyTree, strategy: str, head: str = "head") -> PyTree:
  """ "trainable" / "frozen" for every leaf of `params` under `strategy` (see the module doc);
  `head` is the top-level key of the new head."""
  paths = leaf_paths(params)
  is_head = lambda path: path == head or path.startswith(head + "/")
  if strategy == "none":
    trainable = lambda path: True
  elif strategy == "all_but_head":
    trainable = is_head
  elif strategy.startswith("top_blocks:"):
    try:
      k = int(strategy.split(":", 1)[1])
    except ValueError:
      raise ConfigError(
        f"Freezing strategy {strategy!r} needs an integer K: 'top_blocks:2'."
      ) from None
    depth = num_blocks(params)
    if not 0 <= k <= depth:
      raise ConfigError(f"Freezing strategy {strategy!r}: the model has {depth} blocks.")

    def trainable(path):
      match = _BLOCK.search(path)
      return is_head(path) or (match is not None and int(match.group(1)) >= depth - k)
  elif strategy.startswith("regex:"):
    pattern = re.compile(strategy.split(":", 1)[1])
    trainable = lambda path: not pattern.search(path)
  else:
    raise ConfigError(f"Unknown freezing strategy {strategy!r}; valid: {list(STRATEGIES)}.")
  labels = jax.tree.map(lambda path: TRAINABLE if trainable(path) else FROZEN, paths)
  if TRAINABLE not in jax.tree.leaves(labels):
    raise ConfigError(f"Freezing strategy {strategy!r} freezes every parameter.")
  return labels


def freeze(tx: optax.GradientTransformation, labels: PyTree) -> optax.GradientTransformation:
  """`tx` on the trainable leaves, zero updates on the frozen ones."""
  return optax.multi_transform({TRAINABLE: tx, FROZEN: optax.set_to_zero()}, labels)


def layer_depths(params: PyTree, head: str = "head") -> PyTree:
  """Depth of every leaf: i + 1 for `block_<i>`, the number of blocks + 1 for the head and a
  `final_norm`, and 0 for the rest (embeddings, stems: what comes before the first block)."""
  top = num_blocks(params) + 1

  def depth(path):
    if path == head or path.startswith(head + "/"):
      return top
    match = _BLOCK.search(path)
    if match:
      return int(match.group(1)) + 1
    return top if "final_norm" in path.split("/") else 0

  return jax.tree.map(depth, leaf_paths(params))


def layerwise_decay(
  tx: optax.GradientTransformation, blocks: int, decay: float, head: str = "head"
) -> optax.GradientTransformation:
  """Scales the updates of a leaf at depth d by decay ** (blocks + 1 - d): the head learns at
  the full rate, each block below it `decay` times slower than the one above. The depth
  groups are fixed by `blocks`, so this can be built before the params exist."""
  if not 0.0 < decay <= 1.0:
    raise ConfigError(f"layer-wise lr decay must be in (0, 1]; got {decay}.")
  top = blocks + 1
  groups = {f"depth_{d}": optax.chain(tx, optax.scale(decay ** (top - d))) for d in range(top + 1)}

  def labels(params):
    if num_blocks(params) != blocks:
      raise ConfigError(
        f"layer-wise lr decay was set up for {blocks} blocks; the params have {num_blocks(params)}."
      )
    return jax.tree.map(lambda d: f"depth_{d}", layer_depths(params, head))

  return optax.multi_transform(groups, labels)
