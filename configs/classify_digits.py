r"""Fine-tune a pretrained digits encoder (ResNet from configs/vicreg_digits.py) on labels.

  python -m ssl_jax.main --config configs/vicreg_digits.py --workdir /tmp/vicreg_digits
  python -m ssl_jax.main --config configs/classify_digits.py --workdir /tmp/classify_digits \
      --config.task_kwargs.method=full --config.label_budget.per_class=5

`task_kwargs.init_from` names the pretraining workdir (default /tmp/vicreg_digits; any vision
pretext); `method` is full | linear | peft | scratch, and `task_kwargs.peft.name` picks the
parameter-efficient method (lora | adapter | prefix, the last on a ViT); `config.label_budget`
keeps per_class labels of each class (draw picks which; 0 = all). Semi-supervised:
`--config.label_budget.unlabelled=pair --config.task_kwargs.semi_supervised.name=pretext`
(VICReg's loss on every image) or `fixmatch`. Adversarial training:
`--config.task_kwargs.adversarial.name=pgd` (or fgsm); the `robustness` evaluator reports clean
and PGD accuracy. Early stopping:
`--config.early_stopping.every=25 --config.early_stopping.patience=3` validates on 10% of train
held out (stratified) and evaluates the best validated step. Expected at 5 labels per class
(5 draws): full 93.5 ± 0.9, linear (lr 3e-2) 94.1 ± 1.4, LoRA (lr 1e-2) 92.4 ± 0.8, scratch
88.0 ± 1.5; all of the label-efficiency and robustness tables of docs/internalization.md come from
`python experiments/label_efficiency.py`.
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "image_classification"
  config.task_kwargs = ml_collections.ConfigDict(
    dict(
      init_from="/tmp/vicreg_digits",
      method="full",
      # method="peft" trains this block's method with the head (rank 4 on every conv).
      peft=dict(name="lora", rank=4, alpha=8.0),
      semi_supervised=dict(name="none"),
      adversarial=dict(name="none"),
    )
  )
  config.model = "resnet"
  config.data = ml_collections.ConfigDict(dict(name="digits"))
  # view1: the labelled (and FixMatch weak) view, mild crops only; view2: FixMatch's strong
  # view, the pretraining recipe's jitter, blur and noise.
  config.augment = ml_collections.ConfigDict(
    dict(
      crop_scale=(0.6, 1.0),
      crop_ratio=(0.75, 1.333),
      flip_prob=0.0,
      brightness=0.0,
      contrast=0.0,
      jitter_prob=0.0,
      blur_prob=0.0,
      noise_std=0.0,
      view2=dict(
        crop_scale=(0.5, 1.0),
        brightness=0.2,
        contrast=0.3,
        jitter_prob=0.8,
        blur_prob=0.3,
        blur_sigma=(0.1, 1.0),
        noise_std=0.05,
      ),
    )
  )
  config.optim.update(dict(name="adamw", learning_rate=1e-3, warmup_steps=20, weight_decay=0.01))
  config.evals = ml_collections.ConfigDict({"classification": {}})
  config.total_steps = 200
  config.batch_size = 64
  config.eval_batch_size = 256
  config.log_every = 50
  config.checkpoint_every = 200
  return config
