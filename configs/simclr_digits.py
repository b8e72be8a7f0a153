r"""SimCLR on scikit-learn's 8x8 digits: the offline default vision run (~4 minutes, 2 CPU cores).

  python -m ssl_jax.main --config configs/simclr_digits.py --workdir /tmp/simclr_digits

Expected (docs/vision.md): the linear probe on SimCLR features beats logistic regression on raw
pixels at 1 and 5 labels per class and the randomly initialised encoder at every label count.
"""

from ssl_jax.recipes import digits_config


def get_config():
  return digits_config(
    "simclr", temperature=0.2, projector_hidden_dim=256, projector_dim=64, projector_layers=2
  )
