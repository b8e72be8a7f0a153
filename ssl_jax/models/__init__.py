"""Flax linen models, registered by name in `ssl_jax.registry.MODELS`.

Importing this package registers every model; models never import tasks, data or the trainer.
"""

from ssl_jax.models import encoder_decoder, heads, llama, resnet, transformer, vit  # registration
