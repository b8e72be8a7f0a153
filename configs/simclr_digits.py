r"""SimCLR on scikit-learn's 8x8 digits: the offline default vision run (~4 minutes, 2 CPU cores).

  python -m ssl_jax.main --config configs/simclr_digits.py --workdir /tmp/simclr_digits

Expected (README table): the linear probe on SimCLR features beats logistic regression on raw
pixels at 1 and 5 labels per class and the randomly initialised encoder at every label count.
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "simclr"
  config.task_kwargs = ml_collections.ConfigDict(dict(
      temperature=0.2, projector_hidden_dim=256, projector_dim=64, projector_layers=2))
  config.model = "resnet"
  config.model_kwargs = ml_collections.ConfigDict(dict(
      stage_sizes=(1, 1, 1), width=32, block="basic", stem="cifar"))
  config.data = ml_collections.ConfigDict(dict(name="digits"))
  # Digits are small and not mirror-symmetric: mild crops, no flips, jitter, blur and noise.
  config.augment = ml_collections.ConfigDict(dict(
      crop_scale=(0.5, 1.0), crop_ratio=(0.75, 1.333), flip_prob=0.0, brightness=0.2,
      contrast=0.3, jitter_prob=0.8, blur_prob=0.3, blur_sigma=(0.1, 1.0), noise_std=0.05))
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 30
  config.optim.weight_decay = 1e-4
  config.evals = ml_collections.ConfigDict({
      "linear_probe": {"labels_per_class": (1, 5, 10, 0), "draws": 5},
      "knn": {"k": 20, "temperature": 0.07},
  })
  config.total_steps = 600
  config.batch_size = 256
  config.log_every = 50
  config.checkpoint_every = 200
  config.eval_batch_size = 512
  return config
