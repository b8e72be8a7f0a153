r"""Rotation prediction on 8x8 digits (the zoo recipe, ssl_jax.recipes.digits_config).

  python -m ssl_jax.main --config configs/rotation_digits.py --workdir /tmp/rotation_digits

Expected: see the vision zoo table in docs/vision.md (`python experiments/vision_zoo.py`).
"""

from ssl_jax.recipes import digits_config


def get_config():
  config = digits_config("rotation")
  return config
