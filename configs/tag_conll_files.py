r"""Token classification (BIO entity tagging) of your CoNLL files, fine-tuning the BERT run.

  python -m ssl_jax.main --config configs/bert_python_text.py --workdir /tmp/bert_python_text
  python -m ssl_jax.main --config configs/tag_conll_files.py --workdir /tmp/tag_conll \
    --config.data.train_path=/data/train.txt --config.data.test_path=/data/test.txt

Files hold `word tag` lines (word first, tag last: CoNLL-2003's four columns work too) with a
blank line between sentences. Words are split into the pretraining run's sentencepiece pieces;
the first piece of each word carries its tag (`--config.data.label_all_tokens=True` tags every
piece, B- turned I-). `--config.task_kwargs.method` picks full / linear / peft / scratch, and
`init_from=""` trains `config.model` from scratch. Evaluated by `token_classification`:
entity F1 in the conlleval and strict IOB2 modes and word accuracy on the test file, beside the
all-"O" baseline (entity F1 0). Expected on the test's synthetic people / places files
(tests/test_token_classification.py, from scratch, 150 steps): entity F1 above 0.95 in both
modes.
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  pretraining = "/tmp/bert_python_text"
  config.task = "token_classification"
  config.task_kwargs = ml_collections.ConfigDict(dict(init_from=pretraining, method="full"))
  config.model = "transformer_encoder"
  config.model_kwargs = ml_collections.ConfigDict(dict(dropout_rate=0.1))
  config.data = ml_collections.ConfigDict(
    dict(
      name="conll_files",
      train_path="",
      test_path="",
      seq_len=64,
      tokenizer_path=f"{pretraining}/tokenizer.model",
    )
  )
  config.optim.update(dict(name="adamw", learning_rate=3e-4, warmup_steps=50, weight_decay=0.01))
  config.evals = ml_collections.ConfigDict({"token_classification": {}})
  config.total_steps = 500
  config.batch_size = 32
  config.eval_batch_size = 64
  config.log_every = 50
  config.checkpoint_every = 250
  return config
