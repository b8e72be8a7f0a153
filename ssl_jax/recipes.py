"""Shared recipes behind the configs: the digits zoo (every method trained and evaluated on
identical terms) and the solo-learn CIFAR-10 ResNet-18 recipe of the reference configs."""

from __future__ import annotations

import ml_collections

from ssl_jax.config_base import base_config


def digits_config(task: str, **task_kwargs) -> ml_collections.ConfigDict:
  """A ResNet (1,1,1) width-32 encoder on 8x8 digits, 600 steps of batch 256, AdamW 2e-3,
  evaluated by the linear probe at 1/5/10/all labels per class and kNN."""
  config = base_config()
  config.task = task
  config.task_kwargs = ml_collections.ConfigDict(task_kwargs)
  config.model = "resnet"
  config.model_kwargs = ml_collections.ConfigDict(
    dict(stage_sizes=(1, 1, 1), width=32, block="basic", stem="cifar")
  )
  config.data = ml_collections.ConfigDict(dict(name="digits"))
  # Digits are small and not mirror-symmetric: mild crops, no flips, jitter, blur and noise.
  config.augment = ml_collections.ConfigDict(
    dict(
      crop_scale=(0.5, 1.0),
      crop_ratio=(0.75, 1.333),
      flip_prob=0.0,
      brightness=0.2,
      contrast=0.3,
      jitter_prob=0.8,
      blur_prob=0.3,
      blur_sigma=(0.1, 1.0),
      noise_std=0.05,
    )
  )
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.warmup_steps = 30
  config.optim.weight_decay = 1e-4
  config.evals = ml_collections.ConfigDict(
    {
      "linear_probe": {"labels_per_class": (1, 5, 10, 0), "draws": 5},
      "knn": {"k": 20, "temperature": 0.07},
    }
  )
  config.total_steps = 600
  config.batch_size = 256
  config.log_every = 50
  config.checkpoint_every = 200
  config.eval_batch_size = 512
  return config


CIFAR10_TRAIN_EXAMPLES = 50_000


def cifar10_resnet18_config(
  task: str, learning_rate: float, weight_decay: float, epochs: int = 1000, **task_kwargs
) -> ml_collections.ConfigDict:
  """solo-learn's CIFAR-10 recipe: ResNet-18 (CIFAR stem), batch 256, LARS with the learning
  rate scaled linearly by batch/256, 10 warmup epochs then cosine, the SimCLR/BYOL colour
  augmentations at 32x32 (view 2 solarized with p=0.2), online probe, linear probe and kNN.

  The data is tfds cifar10 read as array_record (`tfds build cifar10
  --file_format=array_record` once); evaluation reads the online probe, an offline linear
  probe on every label and kNN with solo-learn's defaults.
  """
  config = base_config()
  config.task = task
  config.task_kwargs = ml_collections.ConfigDict(task_kwargs)
  config.model = "resnet18"
  config.model_kwargs = ml_collections.ConfigDict(dict(width=64, stem="cifar", dtype="float32"))
  config.data = ml_collections.ConfigDict(dict(name="tfds", dataset="cifar10"))
  config.augment = ml_collections.ConfigDict(
    dict(
      crop_scale=(0.08, 1.0),
      flip_prob=0.5,
      brightness=0.4,
      contrast=0.4,
      saturation=0.2,
      hue=0.1,
      jitter_prob=0.8,
      jitter_order="random",
      grayscale_prob=0.2,
      blur_prob=0.0,
      solarize_prob=0.0,
      view2=dict(solarize_prob=0.2),
    )
  )
  steps_per_epoch = CIFAR10_TRAIN_EXAMPLES // 256
  config.optim.name = "lars"
  config.optim.learning_rate = learning_rate
  config.optim.lr_scaling = "linear"
  config.optim.weight_decay = weight_decay
  config.optim.warmup_steps = 10 * steps_per_epoch
  config.online_probe = True
  config.evals = ml_collections.ConfigDict(
    {
      "online_probe": {},
      "linear_probe": {"labels_per_class": (0,), "draws": 1, "feature_sets": ("trained",)},
      # solo-learn's WeightedKNNClassifier defaults (lightly's benchmarks use k=200, T=0.1).
      "knn": {"k": 20, "temperature": 0.07, "feature_sets": ("trained",)},
    }
  )
  config.total_steps = epochs * steps_per_epoch
  config.batch_size = 256
  config.log_every = 100
  config.checkpoint_every = 5 * steps_per_epoch
  config.eval_batch_size = 512
  return config


def python_text_config(
  task: str, model: str, evals: dict, seq_len: int = 64, **task_kwargs
) -> ml_collections.ConfigDict:
  """The language objectives on the embedded Python text, on identical terms: 2 pre-LN blocks
  of width 128 (4 heads, MLP 256, no dropout), a 2000-piece sentencepiece vocabulary trained on
  the train documents, 1600 steps of 64 rows, AdamW 1e-3 (b2 0.98, 100 warmup steps, weight
  decay 0.01, clipping at 1), evaluated on held-out documents by `evals`."""
  config = base_config()
  config.task = task
  config.task_kwargs = ml_collections.ConfigDict(task_kwargs)
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict(
    dict(width=128, depth=2, num_heads=4, mlp_dim=256, dropout_rate=0.0)
  )
  config.data = ml_collections.ConfigDict(
    dict(name="python_text", seq_len=seq_len, vocab_size=2000, tokenizer_path="")
  )
  config.optim.update(
    dict(
      name="adamw", learning_rate=1e-3, warmup_steps=100, weight_decay=0.01, b2=0.98, clip_norm=1.0
    )
  )
  config.evals = ml_collections.ConfigDict(evals)
  config.total_steps = 1600
  config.batch_size = 64
  config.log_every = 50
  config.checkpoint_every = 400
  config.eval_batch_size = 64
  return config


def pair_pretraining_config(objective: str, pair_weight: float = 1.0) -> ml_collections.ConfigDict:
  """`python_text_config`'s MLM recipe on sentence-pair rows (`python_pairs` with
  `objective` nsp | sop, 64 tokens), with BERT's post-norm layout (token types, pooler, pair
  head), MLM + `pair_weight` x the pair loss; evaluated by `pair_prediction` and `masked_lm`."""
  config = python_text_config(
    "bert_pretraining",
    "transformer_encoder",
    {"pair_prediction": {}, "masked_lm": {}},
    pair_weight=pair_weight,
    mask_rate=0.15,
    mask_prob=0.8,
    random_prob=0.1,
  )
  config.model_kwargs.post_norm = True
  config.data = ml_collections.ConfigDict(
    dict(name="python_pairs", objective=objective, seq_len=64, vocab_size=2000, tokenizer_path="")
  )
  return config


def python_reward_config(rewards: dict, success_threshold: float | None = None):
  """Reward fine-tuning of the `gpt_python_text` GPT (at /tmp/gpt_python_text unless
  `task_kwargs.init_from` is set) on prompts of the embedded docstrings, with `rewards`: RLOO,
  4 completions of up to 32 tokens per prompt, beta 0.05, 200 steps of 16 prompts at AdamW 1e-3,
  the `reward` evaluator on 128 held-out prompts every 100 steps."""
  config = base_config()
  pretraining = ml_collections.FieldReference("/tmp/gpt_python_text")
  config.task = "reward_finetuning"
  config.task_kwargs = ml_collections.ConfigDict(
    dict(
      init_from=pretraining,
      group_size=4,
      max_new_tokens=32,
      temperature=1.0,
      beta=0.05,
      estimator=dict(name="rloo"),
      rewards=rewards,
    )
  )
  config.model = "transformer_decoder"
  config.data = ml_collections.ConfigDict(
    dict(name="text_prompts", prompt_tokens=8, tokenizer_path=pretraining + "/tokenizer.model")
  )
  config.optim.update(dict(name="adamw", learning_rate=1e-3, schedule="constant", clip_norm=1.0))
  evaluation = {"samples_per_prompt": 2, "num_prompts": 128, "every": 100}
  if success_threshold is not None:
    evaluation["success_threshold"] = success_threshold
  config.evals = ml_collections.ConfigDict({"reward": evaluation})
  config.total_steps = 200
  config.batch_size = 16
  config.log_every = 10
  config.checkpoint_every = 100
  config.eval_batch_size = 64
  return config
