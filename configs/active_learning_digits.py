r"""Active learning on the digits pool from SimCLR features: which 10, 20, ... 200 images to label.

  python -m ssl_jax.main --config configs/simclr_digits.py --workdir /tmp/simclr_digits
  python -m ssl_jax.active.main --config configs/active_learning_digits.py \
      --workdir /tmp/active_digits --config.active.strategy=typiclust

The pool is the 1,257 training images with labels hidden; each round queries up to the next
budget, reveals the labels and trains a linear head (input dropout) on the frozen features,
then tests on the 540 test images. `strategy`: any of `ssl_jax.active.strategies.base.QUERY_STRATEGIES`
(uncertainty strategies need `first_strategy`, e.g. "random", for round 0). Full fine-tuning or
PEFT per round: `--config.active.learner=fine_tune` (its options: `learner_kwargs.config_file`,
a fine-tuning config, and `learner_kwargs.overrides`). A person labels the queries with
`--config.active.oracle=human` (files under <workdir>/queries/). Expected (docs/discovery.md, 5 seeds):
TypiClust and ProbCover well ahead of random at 10-30 labels; see experiments/active_learning.py.
"""

import ml_collections

from ssl_jax.active.schema import active_defaults


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.init_from = "/tmp/simclr_digits"
  config.data = ml_collections.ConfigDict(dict(name="digits"))
  config.seed = 0
  config.eval_batch_size = 256
  config.active = active_defaults()
  config.active.budgets = (10, 20, 30, 50, 100, 200)
  return config
