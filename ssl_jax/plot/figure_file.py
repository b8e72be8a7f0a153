"""Figures built without pyplot (no display, no global state) and written atomically."""

from __future__ import annotations

import math

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ssl_jax.files import atomic_path


def panel_grid(panels: int, columns: int = 3, size: tuple[float, float] = (4.6, 3.3)):
  """A Figure with `panels` axes in rows of at most `columns` (no empty axes): (figure, axes)."""
  if panels < 1:
    raise ValueError("A figure needs at least one panel.")
  columns = min(columns, panels)
  rows = math.ceil(panels / columns)
  figure = Figure(figsize=(size[0] * columns, size[1] * rows), layout="constrained")
  axes: list[Axes] = [figure.add_subplot(rows, columns, i + 1) for i in range(panels)]
  return figure, axes


def save_figure(figure: Figure, path: str, dpi: int = 110) -> str:
  """Writes `figure` as a PNG through a temp file and a rename, so a reader never sees half a
  file; returns the path."""
  with atomic_path(path, suffix=".png") as tmp:
    figure.savefig(tmp, dpi=dpi, format="png")
  return path
