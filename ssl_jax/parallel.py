"""Device mesh and shardings: data parallelism over `data`, optional FSDP over `fsdp`.

The global batch is split over every mesh axis; parameters (and their optimizer state) are
replicated, or, with an `fsdp` axis larger than 1, split along their largest divisible dim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax.registry import ConfigError, check_options

MESH_AXES = ("data", "fsdp")
BATCH_AXES = MESH_AXES  # The batch dimension is split over all axes.


def make_mesh(axis_sizes: Mapping[str, int], devices: list[Any] | None = None) -> Mesh:
  """Builds a (data, fsdp) mesh; one size may be -1, meaning "all remaining devices"."""
  check_options("config.mesh", axis_sizes, MESH_AXES)
  devices = list(jax.devices()) if devices is None else list(devices)
  sizes = {axis: int(axis_sizes.get(axis, 1)) for axis in MESH_AXES}
  free = [axis for axis, size in sizes.items() if size == -1]
  if len(free) > 1:
    raise ConfigError(f"Only one mesh axis may be -1, got {sizes}.")
  fixed = math.prod(size for size in sizes.values() if size != -1)
  if free:
    if len(devices) % fixed:
      raise ConfigError(f"config.mesh {sizes} does not divide the {len(devices)} devices.")
    sizes[free[0]] = len(devices) // fixed
  if math.prod(sizes.values()) != len(devices):
    raise ConfigError(
      f"config.mesh {sizes} needs {math.prod(sizes.values())} devices; there are {len(devices)}."
    )
  shape = tuple(sizes[axis] for axis in MESH_AXES)
  device_array = np.asarray(devices).reshape(shape)
  # Auto axes: XLA's partitioner inserts the collectives (e.g. gathering embeddings so the
  # contrastive loss sees the global batch) and the code stays free of sharding annotations.
  return Mesh(device_array, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int, min_size: int = 2**14) -> P:
  """Splits the largest dim divisible by the fsdp axis size; small arrays stay replicated."""
  if fsdp_size == 1 or math.prod(shape) < min_size:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % fsdp_size == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def state_shardings(mesh: Mesh, abstract_state: Any) -> Any:
  """A NamedSharding for every leaf of the (abstract) train state."""
  fsdp_size = mesh.shape["fsdp"]
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(x.shape, fsdp_size)), abstract_state)


def global_batch(
  local_batch: dict[str, np.ndarray], sharding: NamedSharding
) -> dict[str, jax.Array]:
  """Assembles each process's slice into one global array sharded over the batch axes."""
  return {
    key: jax.make_array_from_process_local_data(sharding, value)
    for key, value in local_batch.items()
  }


def replicate_on_current_mesh(tree: Any) -> Any:
  """`tree` (numpy or jax) on device, replicated over the mesh `jax.set_mesh` made current (or
  uncommitted on the default device when none is): constants a jitted step closes over, such as
  a frozen reward model, are then passed to it, never baked into the program."""
  mesh = jax.sharding.get_mesh()
  if mesh.empty:
    return jax.device_put(tree)
  return jax.device_put(tree, replicated(mesh))
