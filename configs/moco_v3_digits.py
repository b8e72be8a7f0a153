r"""MoCo v3 on 8x8 digits (the zoo recipe, ssl_jax.recipes.digits_config).

  python -m ssl_jax.main --config configs/moco_v3_digits.py --workdir /tmp/moco_v3_digits

Expected: see the vision zoo table in docs/vision.md (`python experiments/vision_zoo.py`).
"""

from ssl_jax.recipes import digits_config


def get_config():
  config = digits_config(
    "moco_v3",
    base_momentum=0.99,
    temperature=0.2,
    projector_hidden_dim=256,
    projector_dim=64,
    predictor_hidden_dim=256,
  )
  return config
