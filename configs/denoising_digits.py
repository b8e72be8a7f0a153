r"""A denoising / masked-reconstruction autoencoder on 8x8 digits (the zoo recipe, ssl_jax.recipes.digits_config).

  python -m ssl_jax.main --config configs/denoising_digits.py --workdir /tmp/denoising_digits

Expected: see the vision zoo table in docs/vision.md (`python experiments/vision_zoo.py`).
"""

from ssl_jax.recipes import digits_config


def get_config():
  config = digits_config(
    "denoising", noise_std=0.1, mask_ratio=0.25, patch_size=2, decoder_hidden_dim=256
  )
  return config
