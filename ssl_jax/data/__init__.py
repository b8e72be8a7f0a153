"""Data sources (registered in `ssl_jax.registry.DATASETS`), host pipelines and on-device augmentation.

Data never imports models or the trainer. Importing this package registers every source.
"""

from ssl_jax.data import (
  digits,
  image_folder,
  pair_corpus,
  python_tags,
  python_text,
  random_walks,
  synthetic,  # noqa: F401
  text_classification,
  text_files,
  text_pairs,
  text_prompts,
  tfds_images,
  tfds_text,
  token_tags,
)
from ssl_jax.data.source import Dataset  # noqa: F401
