"""A corpus described as shards: the units of work the token cache's workers tokenize.

A `Corpus` names its sources' content (`fingerprint`), says how to cut them into
`CorpusShard`s (`plan`, only called when a cache is built) and how to read one shard's
documents (`read_shard`). Shards are fixed by the data, never by the number of workers, so the
cache's rows do not depend on how many processes wrote them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

# (shard) -> [(document name, text)]; a module-level function, so spawned workers can call it.
ReadShard = Callable[["CorpusShard"], list[tuple[str, str]]]


@dataclasses.dataclass(frozen=True)
class CorpusShard:
  """One worker's piece of a corpus.

  Attributes:
    source: what the reader opens (a file path, a tuple of paths, a tfds split).
    start, stop: a byte range of a file, or a record range of a tfds split.
    first_name: what document names continue from (a file's line number before `start`).
    split: "train" or "test" for sources split by the user; "" splits documents by name.
    num_bytes: the shard's size, for the progress bar.
  """

  source: Any
  start: int = 0
  stop: int = 0
  first_name: int = 0
  split: str = ""
  num_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class Corpus:
  """What identifies the sources' content, how to cut them into shards, how to read one.

  `plan` is only called when the shards are needed (building the cache, sampling text for a
  new tokenizer): cutting a file at line ends reads all of it, and a second start must not.
  `plan` and `read_shard` are picklable (module-level functions or partials of them), so
  spawned workers can use them.
  """

  name: str
  plan: Callable[[], Sequence[CorpusShard]]
  read_shard: ReadShard
  fingerprint: dict[str, Any]

  @functools.cached_property
  def shards(self) -> tuple[CorpusShard, ...]:
    return tuple(self.plan())

  @property
  def num_bytes(self) -> int:
    return sum(shard.num_bytes for shard in self.shards)


def line_shards(path: str, shard_bytes: int, split: str = "") -> list[CorpusShard]:
  """Byte ranges of about `shard_bytes` that end at line ends, each knowing the number of lines
  before it (document names are "<file>:<line>")."""
  size = os.path.getsize(path)
  shards, start, line = [], 0, 0
  with open(path, "rb") as f:
    while start < size:
      f.seek(start)
      block = f.read(shard_bytes)
      stop = start + len(block)
      if stop < size:
        cut = block.rfind(b"\n")
        if cut < 0:  # One line longer than a shard: read on to its end.
          rest = f.readline()
          block, stop = block + rest, stop + len(rest)
        else:
          block, stop = block[: cut + 1], start + cut + 1
      shards.append(CorpusShard(path, start, stop, line, split, stop - start))
      line += block.count(b"\n")
      start = stop
  return shards


def group_files(paths: Sequence[str], shard_bytes: int) -> list[CorpusShard]:
  """Whole files grouped, in order, into shards of about `shard_bytes`."""
  shards, group, size = [], [], 0
  for path in paths:
    group.append(path)
    size += os.path.getsize(path)
    if size >= shard_bytes:
      shards.append(CorpusShard(tuple(group), num_bytes=size))
      group, size = [], 0
  if group:
    shards.append(CorpusShard(tuple(group), num_bytes=size))
  return shards
