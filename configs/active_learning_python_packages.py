r"""Active learning on the `python_packages` docstrings from GPT features: which to label first.

  python -m ssl_jax.main --config configs/gpt_python_text.py --workdir /tmp/gpt_python_text
  python -m ssl_jax.active.main --config configs/active_learning_python_packages.py \
      --workdir /tmp/active_text --config.active.strategy=probcover

The pool is the train split of the ten-package docstring task (labels hidden); each round
trains a linear head on the frozen features of the GPT run (its tokenizer reads the text:
`data.tokenizer_path` follows `init_from`). Fine-tune per round instead with
`--config.active.learner=fine_tune --config.active.learner_kwargs.config_file=configs/classify_python_packages.py`.
With `--config.active.oracle=human`, queries/round_<k>.csv carries each docstring's text.
Expected (docs/discovery.md): see experiments/active_learning.py, budgets 20 to 400.
"""

import ml_collections

from ssl_jax.active.schema import active_defaults


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  pretraining = ml_collections.FieldReference("/tmp/gpt_python_text")
  config.init_from = pretraining
  config.data = ml_collections.ConfigDict(
    dict(name="python_packages", seq_len=64, tokenizer_path=pretraining + "/tokenizer.model")
  )
  config.seed = 0
  config.eval_batch_size = 64
  config.active = active_defaults()
  config.active.budgets = (20, 40, 60, 100, 200, 400)
  return config
