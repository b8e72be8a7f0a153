"""Plots runs from their workdirs.

  python -m ssl_jax.plot /tmp/simclr_digits /tmp/byol_digits --out curves.png
  python -m ssl_jax.plot /tmp/simclr_digits --embedding --out simclr_map.png

Curves: one panel per logged metric (loss, learning rate, task metrics, throughput, periodic
evaluations) with every run overlaid (`--metrics loss,knn/simclr/knn acc (k=20)` for a subset).
`--embedding`: a map of the newest checkpoint's features on the run's labelled test split
(t-SNE up to --tsne_limit points, else PCA), one figure per workdir (`--out` gets the run's name
appended when there are several). Only reads the workdirs.
"""

from __future__ import annotations

import argparse
import os
import sys

from ssl_jax.errors import UserError
from ssl_jax.plot import embedding_map, run_curves
from ssl_jax.plot.figure_file import save_figure


class _Parser(argparse.ArgumentParser):
  def error(self, message: str):  # one line, like every other user error
    print(f"Error: {message} (see python -m ssl_jax.plot --help).", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = _Parser(prog="python -m ssl_jax.plot", description=__doc__.split("\n\n")[0])
  parser.add_argument("workdirs", nargs="+", help="Run workdirs (each with a metrics.jsonl).")
  parser.add_argument("--out", required=True, help="PNG file to write.")
  parser.add_argument("--metrics", default="", help="Comma-separated subset of the metrics.")
  parser.add_argument("--labels", default="", help="Comma-separated legend names, one per run.")
  parser.add_argument("--embedding", action="store_true", help="Plot a feature map instead.")
  parser.add_argument("--split", default="test", help="Split the map is drawn from.")
  parser.add_argument("--projection", default="auto", choices=embedding_map.PROJECTIONS)
  parser.add_argument("--max_points", type=int, default=2000, help="Points on the map, at most.")
  parser.add_argument("--tsne_limit", type=int, default=3000, help="Above it, PCA.")
  return parser.parse_args(argv)


def embedding_outputs(workdirs: list[str], out: str) -> list[str]:
  if len(workdirs) == 1:
    return [out]
  stem, ext = os.path.splitext(out)
  return [f"{stem}_{name.replace(os.sep, '_')}{ext}" for name in run_curves.run_names(workdirs)]


def main(argv: list[str]) -> list[str]:
  """Writes the figures; returns their paths."""
  args = parse_args(argv)
  if not args.out.lower().endswith(".png"):
    raise UserError(f"--out={args.out!r}: write a .png file.")
  split_list = lambda text: [item for item in text.split(",") if item]
  if not args.embedding:
    figure = run_curves.plot_runs(args.workdirs, split_list(args.metrics), split_list(args.labels))
    return [save_figure(figure, args.out)]
  written = []
  for workdir, out in zip(args.workdirs, embedding_outputs(args.workdirs, args.out)):
    features, labels, names = embedding_map.run_features(workdir, args.split, args.max_points)
    points, method = embedding_map.project(features, args.projection, args.tsne_limit)
    title = f"{run_curves.run_names([workdir])[0]}: {args.split} features ({method}, {len(points)})"
    written.append(save_figure(embedding_map.plot_embedding(points, labels, names, title), out))
  return written


if __name__ == "__main__":
  from absl import logging

  logging.set_verbosity(logging.ERROR)  # Orbax's notes on opening a checkpoint read-only
  try:
    for path in main(sys.argv[1:]):
      print(f"Wrote {path}")
  except (UserError, ValueError) as error:
    print("Error: " + " ".join(str(error).split()), file=sys.stderr)
    sys.exit(2)
  except OSError as error:  # an --out that cannot be written (read-only, a directory)
    print(f"Error: cannot write the figure: {error}.", file=sys.stderr)
    sys.exit(2)
