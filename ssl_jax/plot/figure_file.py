"""Figures built without pyplot (no display, no global state) and written atomically."""

from __future__ import annotations

import math
import os
import tempfile

from matplotlib.axes import Axes
from matplotlib.figure import Figure


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
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".png")
  os.close(fd)
  try:
    figure.savefig(tmp, dpi=dpi, format="png")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the figure from other users
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path
