r"""Sentence-pair classification: do two docstrings come from the same standard-library package?
(`python_same_package` in ssl_jax/data/text_pairs.py: `[CLS] A [SEP] B [SEP]` rows, balanced,
chance 50%), fine-tuning the NSP run.

  python -m ssl_jax.main --config configs/bert_nsp_python.py --workdir /tmp/bert_nsp_python
  python -m ssl_jax.main --config configs/pair_python_packages.py --workdir /tmp/pair_packages

`task_kwargs.init_from` names the pretraining workdir (`data.tokenizer_path` follows it); an
encoder with a token-type table (the NSP / SOP runs) reads types 0 / 1 for the two texts, one
without (a plain MLM run) reads the same rows without them. Your own pairs:
`--config.data.name=text_pair_files --config.data.paths=/data/pairs.jsonl` (fields
`text_a`, `text_b`, `label`; `text_a_key` / `text_b_key` / `label_key` rename them).
`method` is full | linear | peft | scratch, and `label_budget.per_class` keeps k pairs per
class. Expected (2 CPU cores, under a minute, every label): test accuracy about 56% from the NSP
run, 58% from the SOP run, 54% from scratch (chance 50%; `experiments/sentence_pairs.py` has
the budget table).
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  pretraining = ml_collections.FieldReference("/tmp/bert_nsp_python")
  config.task = "classification"
  config.task_kwargs = ml_collections.ConfigDict(
    dict(init_from=pretraining, method="full", pooling="first", head_dropout=0.1)
  )
  config.model = "transformer_encoder"
  config.data = ml_collections.ConfigDict(
    dict(name="python_same_package", seq_len=64, tokenizer_path=pretraining + "/tokenizer.model")
  )
  config.optim.update(
    dict(name="adamw", learning_rate=3e-4, warmup_steps=30, weight_decay=0.01, clip_norm=1.0)
  )
  config.evals = ml_collections.ConfigDict({"classification": {}})
  config.total_steps = 400
  config.batch_size = 32
  config.eval_batch_size = 64
  config.log_every = 100
  config.checkpoint_every = 400
  return config
