r"""Fine-tune a pretrained text encoder to tell which of ten standard-library packages a
docstring comes from (offline, CPU; `python_packages` in ssl_jax/data/text_classification.py).

  python -m ssl_jax.main --config configs/bert_python_text.py --workdir /tmp/bert_python_text
  python -m ssl_jax.main --config configs/classify_python_packages.py \
      --workdir /tmp/classify_full --config.task_kwargs.method=full

`task_kwargs.init_from` names the pretraining workdir (default /tmp/bert_python_text; a
configs/gpt_python_text.py run works too and is the better start here, see the docs'
label-efficiency tables): its config.json rebuilds the encoder, its checkpoint gives the
weights and its tokenizer reads the docstrings (`data.tokenizer_path` follows `init_from`).
`method` is full | linear | peft (`task_kwargs.peft.name`: lora | adapter | prefix | prompt) |
scratch (the same network from random weights); any pretraining run with an encoder view works
(BERT, GPT, T5's encoder, ELECTRA's discriminator). Zero-shot scoring is its own task
(configs/zero_shot_python_packages.py). The run reports validation and test accuracy beside the majority
class (17.0% test); full fine-tuning with every label reaches 86.1% test from the BERT
run. With `--config.early_stopping.every=25 --config.early_stopping.patience=4`
it validates every 25 steps, stops after 4 validations without a better validation accuracy,
and is evaluated at its best validated step. Text adversarial training:
`--config.task_kwargs.adversarial.name=freelb` (embedding space; eps 0.3 by default).
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  pretraining = ml_collections.FieldReference("/tmp/bert_python_text")
  config.task = "classification"
  config.task_kwargs = ml_collections.ConfigDict(
    dict(
      init_from=pretraining,
      method="full",
      pooling="mean",
      layer_decay=1.0,
      # method="peft" trains this block's method (lora | adapter | prefix | prompt) with the head.
      peft=dict(name="lora", rank=8, alpha=16.0),
      semi_supervised=dict(name="none"),
      adversarial=dict(name="none"),
    )
  )
  config.model = "transformer_encoder"
  config.data = ml_collections.ConfigDict(
    dict(name="python_packages", seq_len=64, tokenizer_path=pretraining + "/tokenizer.model")
  )
  config.optim.update(
    dict(name="adamw", learning_rate=1e-3, warmup_steps=30, weight_decay=0.01, clip_norm=1.0)
  )
  config.evals = ml_collections.ConfigDict({"classification": {}})
  config.total_steps = 300
  config.batch_size = 64
  config.eval_batch_size = 64
  config.log_every = 50
  config.checkpoint_every = 300
  return config
