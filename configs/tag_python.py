r"""Entity tagging of the embedded Python text (`python_tags`: the spans the docs mark as
code, typed FUNC / CLASS / MODULE / PARAM / CODE, marks removed), fine-tuning the NSP run.

  python -m ssl_jax.main --config configs/bert_nsp_python.py --workdir /tmp/bert_nsp_python
  python -m ssl_jax.main --config configs/tag_python.py --workdir /tmp/tag_python

Test sentences come from documents every `python_text` / `python_pairs` run holds out. Few-label
runs: `--config.label_budget.per_class=5 --config.label_budget.draw=0` keeps 5 sentences per
entity type (grouped by each sentence's rarest type). `--config.task_kwargs.method` picks
full / linear / peft / scratch (`init_from=""` trains `config.model` from scratch).
Evaluated by `token_classification`: entity F1 (conlleval and strict IOB2), precision, recall
and word accuracy on the test sentences, beside the all-"O" baseline. Expected (2 CPU cores,
about a minute, every label): conlleval entity F1 46 from the NSP run, 59 from the MLM-only
run (`experiments/sentence_pairs.py` has the budget table).
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  pretraining = ml_collections.FieldReference("/tmp/bert_nsp_python")
  config.task = "token_classification"
  config.task_kwargs = ml_collections.ConfigDict(dict(init_from=pretraining, method="full"))
  config.model = "transformer_encoder"
  config.model_kwargs = ml_collections.ConfigDict(dict(dropout_rate=0.1))
  config.data = ml_collections.ConfigDict(
    dict(name="python_tags", seq_len=64, tokenizer_path=pretraining + "/tokenizer.model")
  )
  config.optim.update(dict(name="adamw", learning_rate=1e-3, warmup_steps=30, weight_decay=0.01))
  config.evals = ml_collections.ConfigDict({"token_classification": {}})
  config.total_steps = 300
  config.batch_size = 32
  config.eval_batch_size = 64
  config.log_every = 100
  config.checkpoint_every = 300
  return config
