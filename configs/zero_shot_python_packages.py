r"""Zero-shot classification of the ten standard-library packages with a pretrained language
model: each class's label word is scored after the docstring and a prompt; nothing trains.

  python -m ssl_jax.main --config configs/gpt_python_text.py --workdir /tmp/gpt_python_text
  python -m ssl_jax.main --config configs/zero_shot_python_packages.py \
      --workdir /tmp/zero_shot_gpt --config.task_kwargs.init_from=/tmp/gpt_python_text

A causal LM scores log p(word | text prompt) (`scoring`: sum | per_token | pmi); a masked LM
(configs/bert_python_text.py) scores its one-piece word at [MASK] (PET). Expected (docs/internalization.md,
label-efficiency tables): 13-20% test accuracy beside the 17.0% majority class: 1-2M-parameter
models trained on 1 MB of docstrings carry almost no zero-shot signal for this task.
"""

import ml_collections

from ssl_jax.config_base import base_config
from ssl_jax.tasks.zero_shot import DEFAULT_PROMPT

# Descriptive one-piece words (the package names are several pieces each).
WORDS = "loop,email,import,logging,element,process,test,server,request,encoding"


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  pretraining = ml_collections.FieldReference("/tmp/gpt_python_text")
  config.task = "zero_shot"
  config.task_kwargs = ml_collections.ConfigDict(
    dict(init_from=pretraining, prompt=DEFAULT_PROMPT, verbalizers=WORDS, scoring="per_token")
  )
  config.model = "transformer_decoder"
  config.data = ml_collections.ConfigDict(
    dict(name="python_packages", seq_len=64, tokenizer_path=pretraining + "/tokenizer.model")
  )
  config.evals = ml_collections.ConfigDict({"classification": {}})
  config.total_steps = 0  # evaluate the pretrained model as it is
  config.batch_size = 64
  config.eval_batch_size = 64
  return config
