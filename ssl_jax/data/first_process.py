"""Work that writes shared files, done by process 0 before the other processes of a run.

In a multi-process run every process loads the data. Whatever that writes (a trained tokenizer
in the workdir, a token cache) is made by process 0 first; the others wait at a barrier and
then make it too, which on a shared filesystem finds process 0's files and writes nothing,
and on per-host disks builds each host's own copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import jax
from jax.experimental import multihost_utils

T = TypeVar("T")


def first_on_process_zero(make: Callable[[], T], name: str) -> T:
  """`make()` on process 0, then (after a barrier named `name`) on every other process."""
  if jax.process_count() == 1:
    return make()
  if jax.process_index() == 0:
    result = make()
    multihost_utils.sync_global_devices(name)
    return result
  multihost_utils.sync_global_devices(name)
  return make()
