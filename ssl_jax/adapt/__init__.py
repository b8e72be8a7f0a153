"""Turning a pretrained encoder into a downstream skill: PEFT methods (LoRA, adapters, prefix
and prompt tuning), freezing and layer-wise learning rates, adversarial attacks, zero-shot
scoring and semi-supervised objectives. Pure functions and optax transformations; the
fine-tuning tasks put them to work.

Importing this package registers every PEFT method, adversarial and semi-supervised part.
"""

from ssl_jax.adapt import peft, training_parts
