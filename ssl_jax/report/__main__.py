"""Regenerates the result tables and figures of README.md and docs/ from the experiments' JSON.

python -m ssl_jax.report           # rewrite stale tables, redraw every figure
python -m ssl_jax.report --check   # exit 1 listing each table that no longer matches its JSON
"""

from __future__ import annotations

import argparse
import os
import sys

from ssl_jax.errors import UserError
from ssl_jax.report.docs_sync import sync

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(
    prog="python -m ssl_jax.report", description=__doc__.split("\n\n")[0]
  )
  parser.add_argument("--check", action="store_true", help="Report stale blocks; change nothing.")
  parser.add_argument("--repo", default=REPO, help="Repository root (default: this checkout).")
  args = parser.parse_args(argv)
  try:
    stale = sync(args.repo, args.check)
  except UserError as error:
    print("Error: " + " ".join(str(error).split()), file=sys.stderr)
    return 2
  if args.check and stale:
    print(
      f"{len(stale)} generated blocks are stale; run python -m ssl_jax.report:", file=sys.stderr
    )
    for line in stale:
      print(f"  {line}", file=sys.stderr)
    return 1
  print("Up to date." if args.check else f"Rewrote {len(stale)} stale blocks; redrew the figures.")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
