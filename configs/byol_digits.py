r"""BYOL on 8x8 digits (the zoo recipe, ssl_jax.recipes.digits_config).

  python -m ssl_jax.main --config configs/byol_digits.py --workdir /tmp/byol_digits

Expected: see the vision zoo table in docs/vision.md (`python experiments/vision_zoo.py`).
"""

from ssl_jax.recipes import digits_config


def get_config():
  config = digits_config(
    "byol", base_momentum=0.99, projector_hidden_dim=256, projector_dim=64, predictor_hidden_dim=256
  )
  return config
