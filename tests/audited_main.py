"""`python tests/audited_main.py RECORD WATCHED [ssl_jax.main flags]`: runs `ssl_jax.main` and
writes to RECORD (JSON) every path under WATCHED that this process opened for writing, created,
renamed, truncated or removed, seen through Python's audit hooks (files written by C++
libraries directly are not seen). The multi-process test reads it to show that only process 0
writes into the shared workdir."""

import atexit
import json
import os
import runpy
import sys

record_path, watched = sys.argv[1], os.path.realpath(sys.argv[2])
del sys.argv[1:3]
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {
  "os.mkdir",
  "os.remove",
  "os.rename",
  "os.replace",
  "os.rmdir",
  "os.symlink",
  "os.link",
  "os.truncate",
  "shutil.rmtree",
  "shutil.move",
  "shutil.copyfile",
}
writes: list[str] = []


def _inside(path) -> str | None:
  if isinstance(path, bytes):
    path = path.decode(errors="replace")
  if not isinstance(path, (str, os.PathLike)):
    return None
  path = os.path.realpath(os.fspath(path))
  return path if path == watched or path.startswith(watched + os.sep) else None


def _hook(event: str, args: tuple) -> None:
  if event == "open":
    path, _, flags = args
    if flags is not None and flags & WRITING and _inside(path):
      writes.append(f"open {_inside(path)}")
  elif event in CHANGES:
    for path in args[:2]:
      if _inside(path):
        writes.append(f"{event} {_inside(path)}")


def _write_record() -> None:
  with open(record_path, "w") as f:
    json.dump(writes, f)


atexit.register(_write_record)
sys.addaudithook(_hook)
sys.argv[0] = "ssl_jax.main"
runpy.run_module("ssl_jax.main", run_name="__main__", alter_sys=True)
