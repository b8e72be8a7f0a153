r"""GPT-style causal language modelling on Python's own English text (offline, CPU).

  python -m ssl_jax.main --config configs/gpt_python_text.py --workdir /tmp/gpt_python_text

Trains a sentencepiece tokenizer (cached as <workdir>/tokenizer.model), then a small pre-LN
decoder on packed rows (attention stays inside each document). Ends with held-out next-token
loss, perplexity and accuracy beside a unigram model, and prints sampled continuations of
held-out documents (temperature 0.8, top-k 40, with the key/value cache).
Expected (docs/language.md): held-out perplexity far below the unigram model's.
"""

import ml_collections

from ssl_jax.recipes import python_text_config


def get_config() -> ml_collections.ConfigDict:
  return python_text_config(
    "causal_lm",
    "transformer_decoder",
    {
      "causal_lm": {},
      "lm_samples": {
        "num_samples": 3,
        "prompt_tokens": 12,
        "max_new_tokens": 40,
        "temperature": 0.8,
        "top_k": 40,
      },
    },
  )
