r"""DINO (2 global + 4 local 4x4 crops) on 8x8 digits (the zoo recipe, ssl_jax.recipes.digits_config).

  python -m ssl_jax.main --config configs/dino_digits.py --workdir /tmp/dino_digits

Expected: see the vision zoo table in docs/vision.md (`python experiments/vision_zoo.py`).
"""

from ssl_jax.recipes import digits_config


def get_config():
  config = digits_config(
    "dino",
    base_momentum=0.99,
    out_dim=256,
    hidden_dim=256,
    bottleneck_dim=64,
    num_local_crops=4,
    teacher_temp=0.07,
    warmup_teacher_temp=0.04,
    warmup_teacher_temp_steps=150,
  )
  config.augment.local = dict(size=4, crop_scale=(0.2, 0.5))
  config.optim.clip_norm = 3.0
  return config
