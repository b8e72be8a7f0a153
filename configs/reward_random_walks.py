r"""Reward fine-tuning on the toy suite: from a start node alone, find the shortest path to the
goal of the graph the GPT was pretrained to walk (offline, CPU, about 30 seconds).

  python -m ssl_jax.main --config configs/gpt_random_walks.py --workdir /tmp/gpt_random_walks
  python -m ssl_jax.main --config configs/reward_random_walks.py --workdir /tmp/reward_walks

The reward is the path's optimality (shortest distance / its edges; 0 for a path that is not
one of the graph or does not end at the goal: ssl_jax/rewards/path.py). Estimator:
`--config.task_kwargs.estimator.name=rloo` (or reinforce | grpo, with
`estimator.loss_type` grpo | dapo | dr_grpo and `estimator.updates_per_batch` for PPO-style
reuse); beta is the KL coefficient to the frozen pretrained model (0: no reference in the
step). The `reward` evaluator reports the held-out start nodes' mean reward and success rate
(shortest paths) beside the pretrained model's.
Expected (docs/discovery.md): success rate from about 0.3 before to about 0.9 after.
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  pretraining = ml_collections.FieldReference("/tmp/gpt_random_walks")
  config.task = "reward_finetuning"
  config.task_kwargs = ml_collections.ConfigDict(
    dict(
      init_from=pretraining,
      group_size=4,
      max_new_tokens=24,
      temperature=1.0,
      beta=0.01,
      estimator=dict(name="rloo"),
      rewards={"shortest_path": {"weight": 1.0}},
    )
  )
  config.model = "transformer_decoder"
  config.data = ml_collections.ConfigDict(
    dict(name="random_walk_prompts", tokenizer_path=pretraining + "/tokenizer.model")
  )
  config.optim.update(dict(name="adamw", learning_rate=1e-3, schedule="constant", clip_norm=1.0))
  config.evals = ml_collections.ConfigDict({"reward": {"samples_per_prompt": 8, "every": 50}})
  config.total_steps = 100
  config.batch_size = 16
  config.log_every = 25
  config.checkpoint_every = 50
  config.eval_batch_size = 32
  return config
