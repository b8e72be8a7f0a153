"""Reward fine-tuning's parts, below the tasks: the reward contract and its weighted sum
(`base`), rule rewards, the random-walk path reward, a classifier's probability, the advantage
estimators and the policy losses. `tasks/reward_finetuning.py` puts them in the train step.

Importing this package registers every reward and estimator.
"""

from ssl_jax.rewards import base, classifier, estimators, path, policy_loss, rules
