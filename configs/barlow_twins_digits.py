r"""Barlow Twins on 8x8 digits (the zoo recipe, ssl_jax.recipes.digits_config).

  python -m ssl_jax.main --config configs/barlow_twins_digits.py --workdir /tmp/barlow_twins_digits

Expected: see the vision zoo table in docs/vision.md (`python experiments/vision_zoo.py`).
"""

from ssl_jax.recipes import digits_config


def get_config():
  config = digits_config(
    "barlow_twins", projector_hidden_dim=256, projector_dim=256, lambda_offdiag=0.0051
  )
  return config
