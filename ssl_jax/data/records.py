"""Splits too large to hold in memory: records read and decoded on demand, a batch at a time.

A `RecordSplit` stands where a source would otherwise put a dict of numpy arrays. It maps each
column name to a `LazyColumn` with the array attributes the rest of the code reads (`len`,
`shape`, `dtype`, indexing), and `take(indices)` reads every column of a batch with one pass
over the records, so an image and its label are never fetched twice. The host pipelines call
`take_rows`, which works for both kinds of split.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from typing import Any

import numpy as np

from ssl_jax.errors import DataError

# (indices) -> {column: [len(indices), *shape] array}
ReadRows = Callable[[np.ndarray], dict[str, np.ndarray]]


class RecordSplit(Mapping[str, "LazyColumn"]):
  """N records whose columns have fixed shapes, decoded when a batch of them is asked for.

  Args:
    num_records: how many records the split has.
    read_rows: reads and decodes the records at the given indices, all columns at once.
    columns: {name: (per-record shape, dtype)}; what `read_rows` returns, checked on read.
    read_labels: optional fast path that returns the whole label column without decoding
      images (e.g. a file list's class indices); otherwise the column is read batch by batch.
  """

  def __init__(
    self,
    num_records: int,
    read_rows: ReadRows,
    columns: Mapping[str, tuple[tuple[int, ...], Any]],
    read_labels: Callable[[], np.ndarray] | None = None,
    read_batch_size: int = 256,
  ):
    self.num_records = num_records
    self._read_rows = read_rows
    self._columns = {
      name: LazyColumn(self, name, tuple(shape), np.dtype(dtype))
      for name, (shape, dtype) in columns.items()
    }
    self._read_labels = read_labels
    self._read_batch_size = read_batch_size

  def __getitem__(self, name: str) -> LazyColumn:
    if name not in self._columns:
      raise KeyError(f"Unknown column {name!r}; this split has {sorted(self._columns)}.")
    return self._columns[name]

  def __iter__(self) -> Iterator[str]:
    return iter(self._columns)

  def __len__(self) -> int:
    return len(self._columns)

  def take(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Every column of the records at `indices` (in that order)."""
    indices = np.asarray(indices, np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= self.num_records):
      raise IndexError(
        f"Record indices must lie in [0, {self.num_records}); got "
        f"[{indices.min()}, {indices.max()}]."
      )
    rows = self._read_rows(indices)
    for name, column in self._columns.items():
      want = (len(indices),) + column.element_shape
      if rows[name].shape != want:
        raise DataError(f"Column {name!r} was read with shape {rows[name].shape}, expected {want}.")
    return rows

  def read_column(self, name: str) -> np.ndarray:
    """The whole column, in record order."""
    if name == "label" and self._read_labels is not None:
      return np.asarray(self._read_labels(), self._columns[name].dtype)
    parts = [
      self.take(np.arange(start, min(start + self._read_batch_size, self.num_records)))[name]
      for start in range(0, self.num_records, self._read_batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros((0,) + self[name].element_shape)


class LazyColumn:
  """One column of a RecordSplit, indexable like a numpy array (int, slice, index array).

  `np.asarray(column)` reads the whole column once and keeps it: evaluators do that with labels.
  """

  def __init__(
    self, split: RecordSplit, name: str, element_shape: tuple[int, ...], dtype: np.dtype
  ):
    self.split, self.name, self.element_shape, self.dtype = split, name, element_shape, dtype
    self._cached: np.ndarray | None = None

  @property
  def shape(self) -> tuple[int, ...]:
    return (self.split.num_records,) + self.element_shape

  @property
  def ndim(self) -> int:
    return len(self.shape)

  def __len__(self) -> int:
    return self.split.num_records

  def __getitem__(self, index) -> np.ndarray:
    if self._cached is not None:
      return self._cached[index]
    if isinstance(index, (int, np.integer)):
      return self.split.take(np.array([index]))[self.name][0]
    if isinstance(index, slice):
      index = np.arange(*index.indices(len(self)))
    return self.split.take(np.asarray(index))[self.name]

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    del copy  # Always a fresh or cached array of our own.
    if self._cached is None:
      self._cached = self.split.read_column(self.name)
    return self._cached if dtype is None else self._cached.astype(dtype)

  def reshape(self, *shape) -> np.ndarray:
    return np.asarray(self).reshape(*shape)


def take_rows(split: Mapping[str, Any], indices: np.ndarray) -> dict[str, np.ndarray]:
  """The rows at `indices` of an in-memory split (dict of arrays) or a RecordSplit."""
  if isinstance(split, RecordSplit):
    return split.take(indices)
  return {key: value[indices] for key, value in split.items()}


_POOLS: dict[int, futures.ThreadPoolExecutor] = {}


def parallel_map(fn: Callable[[Any], np.ndarray], items, num_threads: int) -> list[np.ndarray]:
  """fn over items on a shared thread pool (image decoders release the GIL), results in order.

  At most two threads per CPU: more only contend for the GIL between decodes (16 threads on 2
  cores decode 680 JPEGs/s, 4 threads 1,120/s: benchmarks/host_pipeline.py).
  """
  num_threads = min(num_threads, 2 * (os.cpu_count() or 1))
  if num_threads <= 1 or len(items) <= 1:
    return [fn(item) for item in items]
  if num_threads not in _POOLS:
    _POOLS[num_threads] = futures.ThreadPoolExecutor(num_threads, "ssl_jax_decode")
  return list(_POOLS[num_threads].map(fn, items))


def subset_split(split: Mapping[str, Any], indices: np.ndarray) -> Mapping[str, Any]:
  """The rows at `indices` as a split of their own: numpy arrays for an in-memory split, a
  lazy RecordSplit (reading through to `split`) for a RecordSplit."""
  indices = np.asarray(indices, np.int64)
  if not isinstance(split, RecordSplit):
    return take_rows(split, indices)
  columns = {name: (split[name].element_shape, split[name].dtype) for name in split}
  read_labels = (lambda: np.asarray(split["label"])[indices]) if "label" in split else None
  return RecordSplit(
    len(indices), lambda rows: split.take(indices[rows]), columns, read_labels=read_labels
  )
