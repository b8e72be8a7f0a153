r"""NNCLR (nearest-neighbour positives from a support queue) on 8x8 digits (the zoo recipe,
ssl_jax.recipes.digits_config).

  python -m ssl_jax.main --config configs/nnclr_digits.py --workdir /tmp/nnclr_digits

The queue holds 2048 past embeddings (8 batches of 256; solo-learn uses 65536 on ImageNet-size
data), temperature 0.2 as solo-learn. Expected: see the vision zoo table in docs/vision.md
(`python experiments/vision_zoo.py`).
"""

from ssl_jax.recipes import digits_config


def get_config():
  return digits_config(
    "nnclr",
    temperature=0.2,
    queue_size=2048,
    projector_hidden_dim=256,
    projector_dim=64,
    predictor_hidden_dim=256,
  )
