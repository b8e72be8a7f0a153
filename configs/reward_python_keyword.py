r"""Reward fine-tuning with a rule-based reward: steer the GPT trained on Python's docstrings to
write completions that use the word "file" (the `keyword` reward; offline, CPU).

  python -m ssl_jax.main --config configs/gpt_python_text.py --workdir /tmp/gpt_python_text
  python -m ssl_jax.main --config configs/reward_python_keyword.py --workdir /tmp/reward_keyword

Prompts are the first 8 pieces of docstrings (`text_prompts`); the reward is 1 when "file"
occurs as a word in the completion (ssl_jax/rewards/rules.py: `keyword`, `regex`,
`target_length`; several combine with weights in `task_kwargs.rewards`). The `reward`
evaluator reports, on held-out prompts, the fraction of samples with the word, and their
perplexity under the frozen pretrained model, before and after.
Expected (docs/discovery.md): from about 0.05 to above 0.5 in 200 steps (~75 s).
"""

import ml_collections

from ssl_jax.recipes import python_reward_config


def get_config() -> ml_collections.ConfigDict:
  return python_reward_config({"keyword": {"keywords": "file"}})
