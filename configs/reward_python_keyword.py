r"""Reward fine-tuning with a rule-based reward: steer the GPT trained on Python's docstrings to
write completions that use the word "file" (the `keyword` reward; offline, CPU).

  python -m ssl_jax.main --config configs/gpt_python_text.py --workdir /tmp/gpt_python_text
  python -m ssl_jax.main --config configs/reward_python_keyword.py --workdir /tmp/reward_keyword

Prompts are the first 8 pieces of docstrings (`text_prompts`); the reward is 1 when "file"
occurs as a word in the completion (ssl_jax/discover/rule_rewards.py: `keyword`, `regex`,
`target_length`; several combine with weights in `task_kwargs.rewards`). The `reward`
evaluator reports, on held-out prompts, the fraction of samples with the word, and their
perplexity under the frozen pretrained model, before and after.
Expected (README table): from about 0.05 to above 0.5 in 200 steps (~75 s).
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
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
      rewards={"keyword": {"keywords": "file"}},
    )
  )
  config.model = "transformer_decoder"
  config.data = ml_collections.ConfigDict(
    dict(name="text_prompts", prompt_tokens=8, tokenizer_path=pretraining + "/tokenizer.model")
  )
  config.optim.update(dict(name="adamw", learning_rate=1e-3, schedule="constant", clip_norm=1.0))
  config.evals = ml_collections.ConfigDict(
    {"reward": {"samples_per_prompt": 2, "num_prompts": 128, "every": 100}}
  )
  config.total_steps = 200
  config.batch_size = 16
  config.log_every = 10
  config.checkpoint_every = 100
  config.eval_batch_size = 64
  return config
