r"""Reward fine-tuning with a learned reward: steer the GPT trained on Python's docstrings to
write docstrings that a fine-tuned package classifier assigns to `logging` (offline, CPU).

  python -m ssl_jax.main --config configs/gpt_python_text.py --workdir /tmp/gpt_python_text
  python -m ssl_jax.main --config configs/classify_python_packages.py --workdir /tmp/classify_gpt \
      --config.task_kwargs.init_from=/tmp/gpt_python_text --config.model=transformer_decoder
  python -m ssl_jax.main --config configs/reward_python_logging.py --workdir /tmp/reward_logging

Prompts are the first 8 pieces of held-out and training docstrings (`text_prompts`); the
reward is p(logging | prompt + completion) under the classifier (`classifier` reward, on
device). The `reward` evaluator reports, on held-out prompts, the mean target probability of
samples and the completions' perplexity under the frozen pretrained model, before and after.
beta (0.05) keeps that perplexity near the pretrained model's; `--config.task_kwargs.beta=0`
shows what the KL term prevents: the reward rises further while the text drifts away from
English (reference perplexity grows).
Expected (docs/discovery.md): p(logging) from about 0.07 to above 0.5 in 200 steps (~75 s).
"""

import ml_collections

from ssl_jax.recipes import python_reward_config


def get_config() -> ml_collections.ConfigDict:
  return python_reward_config(
    {"classifier": {"workdir": "/tmp/classify_gpt", "target_class": "logging"}},
    success_threshold=0.5,
  )
