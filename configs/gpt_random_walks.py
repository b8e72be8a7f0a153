r"""A small GPT pretrained on random walks to a goal node: the base model of the toy reward
suite (trlX's random walks; ssl_jax/data/random_walks.py). Offline, CPU, about a minute.

  python -m ssl_jax.main --config configs/gpt_random_walks.py --workdir /tmp/gpt_random_walks

The walks are valid but unoptimised: from a random start node, uniform random steps until the
goal "a" (at most 12 nodes); 22% of them are shortest paths. The model learns to walk the
graph and stop at the goal; configs/reward_random_walks.py then fine-tunes it on the reward.
Expected: held-out next-token accuracy ~0.5 (a random walk's next step is random), and samples
that are valid walks ending in "a".
"""

import ml_collections

from ssl_jax.config_base import base_config


def get_config() -> ml_collections.ConfigDict:
  config = base_config()
  config.task = "causal_lm"
  config.model = "transformer_decoder"
  config.model_kwargs = ml_collections.ConfigDict(
    dict(width=64, depth=2, num_heads=4, mlp_dim=128, dropout_rate=0.0)
  )
  config.data = ml_collections.ConfigDict(dict(name="random_walks", seq_len=64))
  config.optim.update(
    dict(
      name="adamw", learning_rate=3e-3, warmup_steps=50, weight_decay=0.01, b2=0.98, clip_norm=1.0
    )
  )
  config.evals = ml_collections.ConfigDict(
    {
      "causal_lm": {},
      "lm_samples": {
        "num_samples": 3,
        "prompt_tokens": 3,
        "max_new_tokens": 24,
        "temperature": 1.0,
        "top_k": 20,
      },
    }
  )
  config.total_steps = 600
  config.batch_size = 32
  config.log_every = 100
  config.checkpoint_every = 600
  config.eval_batch_size = 32
  return config
