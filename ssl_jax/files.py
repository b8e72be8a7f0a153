"""Atomic file writes: a reader never sees half a file, and a written file is as readable as a
plain `open(path, "w")` would have made it (0666 masked by the umask).

Every file a run writes (config.json, results.json, rounds.json, tokenizers, figures, round
outputs) goes through `atomic_path`: the content is written to a temporary file beside the
target and renamed over it. `tempfile.mkstemp` creates its file 0600, which would hide the
result from a collaborator on a shared filesystem, so the mode is set before the rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np


def default_file_mode() -> int:
  """The mode `open(path, "w")` gives a new file under the current umask."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ".tmp") -> Iterator[str]:
  """Yields a temporary path in `path`'s directory (made if missing) to write to; on a clean
  exit it gets the default file mode and replaces `path`, on an error it is removed.
  `suffix` keeps writers that insist on an extension (np.savez, savefig) from adding one."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=suffix)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
    f.write(text)


def _to_builtin(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)):
    return value.tolist()
  raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_json(path: str, obj: Any) -> None:
  """JSON, indented, keys in their order (tables rendered from the file list rows and columns
  as the run made them)."""
  write_text(path, json.dumps(obj, indent=2, default=_to_builtin) + "\n")


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  with atomic_path(path, suffix=".npz") as tmp:
    np.savez(tmp, **arrays)
