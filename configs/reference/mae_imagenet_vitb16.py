r"""MAE ViT-B/16 on ImageNet (He et al., 2022): 800 epochs, batch 4096, AdamW (base lr 1.5e-4
scaled by batch/256, betas 0.9/0.95, wd 0.05), 40 warmup epochs, mask ratio 0.75, normalised
pixel targets, decoder 512 wide and 8 deep.

  python -m ssl_jax.main --config configs/reference/mae_imagenet_vitb16.py --workdir /tmp/mae
  python -m ssl_jax.main --config configs/reference/mae_imagenet_vitb16.py:finetune \
      --workdir /tmp/mae_finetune --config.task_kwargs.init_from=/tmp/mae

Published: 83.6 top-1 after fine-tuning, 68.0 linear probe (ViT-B/16, 1600 epochs: 83.6/68.0).
Data: tfds imagenet2012 as array_record (place the archives in the manual dir, then
  tfds build imagenet2012 --file_format=array_record), decoded to 224x224 on the host.
The `finetune` variant is the `image_classification` task from the pretraining run: plain
AdamW end to end for the paper's 100 epochs (no layer-wise decay, mixup or cutmix, which the
paper's 83.6 uses); tests run the config on synthetic 224x224 data.
"""

import ml_collections

from ssl_jax.config_base import base_config

IMAGENET_TRAIN_EXAMPLES = 1_281_167


def get_config(variant: str = "pretrain"):
  if variant == "finetune":
    return finetune_config()
  if variant != "pretrain":
    raise ValueError(f"Unknown variant {variant!r}; valid: ['pretrain', 'finetune'].")
  config = base_config()
  config.task = "mae"
  config.task_kwargs = ml_collections.ConfigDict(
    dict(mask_ratio=0.75, norm_pix_loss=True, decoder_width=512, decoder_depth=8, decoder_heads=16)
  )
  config.model = "vit_b"
  config.model_kwargs = ml_collections.ConfigDict(
    dict(patch_size=16, image_size=224, pool="cls", position_embedding="sincos", dtype="bfloat16")
  )
  config.data = ml_collections.ConfigDict(dict(name="tfds", dataset="imagenet2012", image_size=224))
  config.augment = ml_collections.ConfigDict(
    dict(crop_scale=(0.2, 1.0), flip_prob=0.5, brightness=0.0, contrast=0.0, jitter_prob=0.0)
  )
  steps_per_epoch = IMAGENET_TRAIN_EXAMPLES // 4096
  config.optim.name = "adamw"
  config.optim.learning_rate = 1.5e-4
  config.optim.lr_scaling = "linear"
  config.optim.b2 = 0.95
  config.optim.weight_decay = 0.05
  config.optim.warmup_steps = 40 * steps_per_epoch
  config.evals = ml_collections.ConfigDict(
    {
      "linear_probe": {"labels_per_class": (0,), "draws": 1, "feature_sets": ("trained",)},
    }
  )
  config.total_steps = 800 * steps_per_epoch
  config.batch_size = 4096
  config.log_every = 100
  config.checkpoint_every = 1000
  config.eval_batch_size = 1024
  return config


def finetune_config():
  """The paper's fine-tuning: 100 epochs at batch 1024, base lr 5e-4 (scaled: 2e-3), wd 0.05,
  5 warmup epochs, random resized crops (0.08, 1) and flips."""
  pretraining = get_config()
  config = base_config()
  config.task = "image_classification"
  config.task_kwargs = ml_collections.ConfigDict(dict(init_from="/tmp/mae", method="full"))
  config.model, config.model_kwargs = pretraining.model, pretraining.model_kwargs
  config.data = pretraining.data
  config.augment = ml_collections.ConfigDict(
    dict(crop_scale=(0.08, 1.0), flip_prob=0.5, brightness=0.0, contrast=0.0, jitter_prob=0.0)
  )
  config.optim.update(
    dict(
      name="adamw",
      learning_rate=2e-3,
      b2=0.999,
      weight_decay=0.05,
      warmup_steps=5 * IMAGENET_TRAIN_EXAMPLES // 1024,
    )
  )
  config.evals = ml_collections.ConfigDict({"classification": {"splits": ("test",)}})
  config.total_steps = 100 * IMAGENET_TRAIN_EXAMPLES // 1024
  config.batch_size = 1024
  config.eval_batch_size = 1024
  config.log_every = 100
  config.checkpoint_every = 1000
  return config
