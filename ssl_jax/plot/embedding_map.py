"""A map of a run's features: its encoder on a labelled split, projected to 2-D and coloured
by class. t-SNE (scikit-learn, after a PCA to 50 dimensions) up to `tsne_limit` points, PCA
above it, where t-SNE's cost grows too fast to wait for."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from ssl_jax.capabilities import Represents
from ssl_jax.errors import ConfigError, DataError
from ssl_jax.registry import TASKS

PROJECTIONS = ("auto", "tsne", "pca")


def run_features(
  workdir: str, split: str = "test", max_points: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """(features [N, D], labels [N], class names) of the newest checkpoint of the run in
  `workdir` on `split` of its own data; at most `max_points` labelled examples, drawn at
  random with `seed`. Only reads the workdir."""
  # Imported here, not at the top: curves alone (the common use) need neither JAX nor the
  # tasks and data sources, which take seconds to import.
  from ssl_jax import data as _datasets  # noqa: F401  (registers the datasets)
  from ssl_jax import tasks as _tasks  # noqa: F401  (registers the tasks)
  from ssl_jax.data.records import take_rows
  from ssl_jax.evals.context import TRAINED, standalone_context
  from ssl_jax.registry import DATASETS
  from ssl_jax.runs.finished import load_finished_run, read_config

  config = read_config(workdir)
  if not issubclass(TASKS.get(config.task), Represents):
    raise ConfigError(
      f"The run in {workdir!r} ({config.task}) gives no features (Represents): an embedding "
      "map needs a run whose task represents its inputs."
    )
  options = {key: value for key, value in config.data.items() if key != "name"}
  dataset = DATASETS.build(config.data.name, options, workdir)
  if split not in dataset.splits:
    raise DataError(
      f"split={split!r} is not in the run's data; its splits: {sorted(dataset.splits)}."
    )
  arrays = dataset.split(split)
  labels = np.asarray(arrays["label"]) if "label" in arrays else np.zeros((0,), np.int64)
  keep = np.flatnonzero(labels >= 0)
  if not len(keep):
    raise DataError(
      f"The {split!r} split of the run in {workdir!r} has no labels to colour a map by; "
      "plot a run on labelled data (digits, an image folder, a text classification set)."
    )
  rng = np.random.default_rng(seed)
  if len(keep) > max_points:
    keep = np.sort(rng.choice(keep, max_points, replace=False))
  # Only the drawn rows are read (a lazily decoded split stays lazy for the rest).
  dataset.splits[split] = take_rows(arrays, keep)
  run = load_finished_run(workdir, dataset)
  variables = (run.variables["params"], run.variables["model_state"])
  features = standalone_context(run.task, variables, dataset, 256, seed).features(TRAINED, split)
  names = dataset.info.get("class_names") or [str(c) for c in range(int(labels.max()) + 1)]
  return np.asarray(features, np.float32), labels[keep], list(names)


def project(
  features: np.ndarray, method: str = "auto", tsne_limit: int = 3000, seed: int = 0
) -> tuple[np.ndarray, str]:
  """[N, 2] coordinates of `features` and the method used ("tsne" or "pca")."""
  from sklearn.decomposition import PCA
  from sklearn.manifold import TSNE

  if method not in PROJECTIONS:
    raise ConfigError(f"projection={method!r} is not one of {list(PROJECTIONS)}.")
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 3:
    raise DataError(f"An embedding map needs at least 3 feature rows; got shape {features.shape}.")
  if method == "auto":
    method = "tsne" if len(features) <= tsne_limit else "pca"
  features = (features - features.mean(0)) / (features.std(0) + 1e-8)
  reduced = PCA(min(50, *features.shape), random_state=seed).fit_transform(features)
  if method == "pca":
    points = reduced[:, :2] if reduced.shape[1] >= 2 else np.pad(reduced, ((0, 0), (0, 1)))
    return points, method
  perplexity = float(min(30, (len(features) - 1) / 3))
  tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed, learning_rate="auto")
  return tsne.fit_transform(reduced), method


def plot_embedding(
  points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], title: str
) -> Figure:
  """A scatter of `points` with one colour (and one legend entry) per class present."""
  figure = Figure(figsize=(6.4, 5.6), layout="constrained")
  ax = figure.add_subplot()
  classes = np.unique(labels)
  colors = _class_colors(len(classes))
  for color, label in zip(colors, classes):
    chosen = labels == label
    name = class_names[label] if label < len(class_names) else str(label)
    ax.scatter(points[chosen, 0], points[chosen, 1], s=7, color=color, label=name, alpha=0.8)
  ax.set_title(title, fontsize=10)
  ax.set_xticks([])
  ax.set_yticks([])
  ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
  return figure


def _class_colors(count: int) -> list:
  from matplotlib import colormaps

  cmap = colormaps["tab10" if count <= 10 else "tab20"]
  return [cmap(i % cmap.N) for i in range(count)]
