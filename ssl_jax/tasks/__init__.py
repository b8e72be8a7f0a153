"""Pretext tasks: each ties a model to its loss and representation, registered in TASKS.

Importing this package registers every task.
"""

from ssl_jax.tasks import (
  bert_pretraining,
  byol,
  causal_lm,
  classification,
  dino,
  electra,  # noqa: F401
  image_classification,
  mae,
  mlm,
  moco_v3,
  nnclr,
  reconstruction,
  redundancy,
  reward_finetuning,
  simclr,
  simsiam,
  span_corruption,
  token_classification,
  zero_shot,
)
from ssl_jax.tasks.base import Task  # noqa: F401
