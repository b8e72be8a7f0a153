r"""DINO ViT-S/16 on ImageNet (Caron et al., 2021): 800 epochs, batch 1024, AdamW (base lr
5e-4 scaled by batch/256, wd 0.04), teacher momentum 0.996 -> 1, teacher temperature 0.04 ->
0.07 over 30 epochs, 2 global 224-px crops (scale 0.25-1) + 10 local 96-px crops (0.05-0.25),
65536 prototypes, gradient clipping 3.0.

  python -m ssl_jax.main --config configs/reference/dino_imagenet_vits16.py --workdir /tmp/dino

Published: 77.0 linear, 74.5 kNN (ViT-S/16, 800 epochs). Weight decay ramps 0.04 -> 0.4
(cosine) and the prototypes are frozen for the first epoch, as in the paper.
Data: tfds imagenet2012 as array_record (place the archives in the manual dir, then
  tfds build imagenet2012 --file_format=array_record), decoded to 224x224 on the host (the
crops are taken from that centre square on device). Tests run it on synthetic 224x224 data.
"""

import ml_collections

from ssl_jax.config_base import base_config

IMAGENET_TRAIN_EXAMPLES = 1_281_167


def get_config():
  config = base_config()
  config.task = "dino"
  steps_per_epoch = IMAGENET_TRAIN_EXAMPLES // 1024
  config.task_kwargs = ml_collections.ConfigDict(
    dict(
      base_momentum=0.996,
      out_dim=65536,
      hidden_dim=2048,
      bottleneck_dim=256,
      num_local_crops=10,
      student_temp=0.1,
      teacher_temp=0.07,
      warmup_teacher_temp=0.04,
      warmup_teacher_temp_steps=30 * steps_per_epoch,
      freeze_last_layer_steps=steps_per_epoch,
    )
  )
  config.model = "vit_s"
  config.model_kwargs = ml_collections.ConfigDict(
    dict(patch_size=16, image_size=224, pool="cls", dtype="bfloat16")
  )
  config.data = ml_collections.ConfigDict(dict(name="tfds", dataset="imagenet2012", image_size=224))
  config.augment = ml_collections.ConfigDict(
    dict(
      crop_scale=(0.25, 1.0),
      flip_prob=0.5,
      brightness=0.4,
      contrast=0.4,
      saturation=0.2,
      hue=0.1,
      jitter_prob=0.8,
      jitter_order="random",
      grayscale_prob=0.2,
      blur_prob=1.0,
      blur_sigma=(0.1, 2.0),
      view2=dict(blur_prob=0.1, solarize_prob=0.2),
      local=dict(size=96, crop_scale=(0.05, 0.25), blur_prob=0.5),
    )
  )
  config.optim.name = "adamw"
  config.optim.learning_rate = 5e-4
  config.optim.lr_scaling = "linear"
  config.optim.weight_decay = 0.04
  config.optim.weight_decay_end = 0.4
  config.optim.clip_norm = 3.0
  config.optim.warmup_steps = 10 * steps_per_epoch
  config.evals = ml_collections.ConfigDict(
    {
      "linear_probe": {"labels_per_class": (0,), "draws": 1, "feature_sets": ("trained",)},
      "knn": {"k": 20, "temperature": 0.07, "feature_sets": ("trained",)},  # DINO's protocol.
    }
  )
  config.total_steps = 800 * steps_per_epoch
  config.batch_size = 1024
  config.log_every = 100
  config.checkpoint_every = 1000
  config.eval_batch_size = 1024
  return config
