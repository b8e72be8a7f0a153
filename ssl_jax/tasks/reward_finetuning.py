"""Reward fine-tuning of a pretrained causal LM (REINFORCE / RLOO / GRPO), inside the trainer.

  config.task = "reward_finetuning"
  config.task_kwargs = {"init_from": "/tmp/gpt_walks", "group_size": 4, "beta": 0.04,
                        "estimator": {"name": "rloo"},
                        "rewards": {"shortest_path": {"weight": 1.0}}}
  config.data = {"name": "random_walk_prompts", "tokenizer_path": "/tmp/gpt_walks/tokenizer.model"}

Each train step, inside the one jitted step: the batch's prompts (right-padded "prompt" rows
with their "prompt_length") are repeated `group_size` times, completed by the current policy
with the key/value-cache sampler, scored by the weighted rewards (`ssl_jax.rewards.base`),
turned into advantages by the estimator (`ssl_jax.rewards.estimators`), and the clipped
policy-gradient loss (`ssl_jax.rewards.policy_loss`) is taken over completion tokens only:
prompt and padding positions get no gradient. The policy starts from `init_from`'s newest
checkpoint; a frozen copy of it is the reference for the KL term (beta = 0: no reference
forward in the step). The reference is not checkpointed: `init_from` points at it, and
results.json records its checkpoint. With `estimator.updates_per_batch = mu > 1` a batch of
samples is stored in the model state (so checkpointed) and reused for mu updates, the ratio to
the sampling policy clipped PPO-style; the prompts of the mu - 1 steps in between are unused.
Sampling and the loss's log-probabilities use `temperature`; dropout is off throughout.
"""

from __future__ import annotations

from typing import Annotated, Any

import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax import rewards as _rewards  # noqa: F401  (registers the rewards and estimators)
from ssl_jax.capabilities import NextTokenPredictor, RewardPolicy
from ssl_jax.data.source import Dataset
from ssl_jax.data.tokenizer import load_tokenizer
from ssl_jax.errors import ConfigError
from ssl_jax.models.sampling import completion_log_probs, sample_completions
from ssl_jax.registry import TASKS
from ssl_jax.rewards.base import REWARDS, WEIGHT, RewardContext, WeightedRewards
from ssl_jax.rewards.estimators import ESTIMATORS
from ssl_jax.rewards.policy_loss import clipped_surrogate, kl_per_token, masked_mean, normalise
from ssl_jax.runs.finished import check_source, load_finished_run
from ssl_jax.tasks.base import Task
from ssl_jax.tasks.pretrained_weights import place_like
from ssl_jax.value_checks import Range

ROLLOUT = "rollout"  # model_state key of the reused batch of samples
sg = jax.lax.stop_gradient


def check_policy_source(options: dict[str, Any]) -> None:
  """Declared at registration, run before any work: init_from holds a run that predicts next
  tokens (the sizes, temperature and beta declare their ranges in the signature)."""
  init_from = options.get("init_from", "")
  if not init_from:
    raise ConfigError(
      "config.task_kwargs.init_from is empty: name the workdir of a causal_lm pretraining run."
    )
  check_source(init_from, requires=(NextTokenPredictor,))


@TASKS.register("reward_finetuning", check=check_policy_source)
class RewardFinetuning(Task, RewardPolicy):
  """See the module docstring."""

  modality = "text"
  nested_parts = {"estimator": (ESTIMATORS, "grpo")}
  # name -> options blocks, each with a weight: several rewards at once.
  nested_part_maps = {"rewards": (REWARDS, {WEIGHT: 1.0})}

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    init_from: str = "",
    group_size: Annotated[int, Range(1)] = 4,
    max_new_tokens: Annotated[int, Range(1)] = 24,
    temperature: Annotated[float, Range(0.0, low_open=True)] = 1.0,
    top_p: Annotated[float, Range(0.0, 1.0, low_open=True)] = 1.0,
    beta: Annotated[float, Range(0.0)] = 0.04,
    estimator: dict[str, Any] | None = None,
    rewards: dict[str, Any] | None = None,
  ):
    super().__init__(config, dataset)
    rows = dataset.split(dataset.train_split)
    if "prompt" not in rows or "prompt_length" not in rows:
      raise ConfigError(
        f"Task 'reward_finetuning' needs prompts (fields 'prompt', 'prompt_length'); "
        f"config.data.name={config.data.name!r} gives {sorted(rows)}. Use random_walk_prompts "
        "or text_prompts."
      )
    estimator = dict(estimator or {"name": "grpo"})
    self.estimator = ESTIMATORS.build(estimator.pop("name"), estimator)
    if group_size < self.estimator.min_group_size:
      raise ConfigError(
        f"config.task_kwargs.group_size={group_size}: estimator {config.task_kwargs.estimator.name!r} "
        f"compares completions of a prompt and needs at least {self.estimator.min_group_size}."
      )
    self.source = load_finished_run(init_from, dataset, requires=(NextTokenPredictor,))
    self.model, _ = self.source.task.sampling_model(self.source.variables["params"])
    self.prompt_len = int(rows["prompt"].shape[1])
    if self.prompt_len + max_new_tokens > self.model.max_length:
      raise ConfigError(
        f"Prompts of {self.prompt_len} tokens + config.task_kwargs.max_new_tokens="
        f"{max_new_tokens} exceed the policy's {self.model.max_length} positions."
      )
    info = dataset.info
    self.group_size, self.max_new_tokens = int(group_size), int(max_new_tokens)
    self.temperature, self.top_p = float(temperature), float(top_p)
    self.beta = float(beta)
    self.eos_id, self.pad_id = int(info["eos_id"]), int(info["pad_id"])
    self.banned_ids = (self.pad_id,)  # padding is never a continuation
    self.tokenizer = load_tokenizer(info["tokenizer_path"]) if info.get("tokenizer_path") else None
    context = RewardContext(
      info, self.tokenizer, self.eos_id, self.pad_id, self.max_new_tokens, self.model.max_length
    )
    self.rewards = WeightedRewards(dict(rewards or {}), context)
    self._reference = None

  # --- State --------------------------------------------------------------------------------

  def init(self, rng, batch):
    params, model_state = self.source.task.init(rng, self.source.example())
    if self.estimator.updates_per_batch > 1:
      rows = batch["prompt"].shape[0] * self.group_size
      model_state = {
        **model_state,
        ROLLOUT: jax.tree.map(jnp.zeros_like, self._buffer_shapes(rows)),
      }
    return params, model_state

  def load_pretrained(self, params, model_state):
    pretrained = self.source.variables["params"]
    # Two copies: the policy's buffers are donated to every step, the reference's never.
    self._reference = place_like(pretrained, params)
    return place_like(pretrained, params), model_state

  def reference_params(self):
    if self._reference is None:
      raise RuntimeError("The reference is placed by load_pretrained, before any step.")
    return self._reference

  def export(self, params, directory):
    del params, directory
    return {"reference": self.source.checkpoint}

  # --- Sampling and scoring -------------------------------------------------------------------

  def _repeat(self, batch: dict[str, jax.Array], group_size: int) -> dict[str, jax.Array]:
    return {key: jnp.repeat(value, group_size, axis=0) for key, value in batch.items()}

  def sample(self, params, batch, rng, group_size: int, temperature: float) -> dict[str, Any]:
    """Completions of each prompt (group_size each, rows grouped by prompt), their rewards."""
    rows = self._repeat(batch, group_size)
    out = sample_completions(
      self.model,
      params,
      rows["prompt"],
      rows["prompt_length"],
      rng,
      self.max_new_tokens,
      self.eos_id,
      self.pad_id,
      temperature,
      0,
      self.top_p,
      self.banned_ids,
    )
    others = {k: v for k, v in rows.items() if k != "prompt"}
    total, components = self.rewards(rows["prompt"], out["completions"], others)
    return {
      "tokens": out["tokens"],
      "prompt_length": rows["prompt_length"],
      "completions": out["completions"],
      "mask": out["completion_mask"],
      "rewards": total,
      "components": components,
    }

  def log_probs(self, params, samples, temperature: float | None = None):
    """(log-probabilities [N, C], entropies [N, C]) of the completions under `params`; 0
    outside the completions (padding is banned, so its log-probability would be -inf)."""
    log_probs, entropy = completion_log_probs(
      self.model,
      params,
      samples["tokens"],
      samples["prompt_length"],
      samples["completions"],
      self.banned_ids,
      self.temperature if temperature is None else temperature,
    )
    mask = samples["mask"]
    return jnp.where(mask, log_probs, 0.0), jnp.where(mask, entropy, 0.0)

  def _buffer_shapes(self, rows: int) -> dict[str, Any]:
    batch = {
      "prompt": jax.ShapeDtypeStruct((rows // self.group_size, self.prompt_len), jnp.int32),
      "prompt_length": jax.ShapeDtypeStruct((rows // self.group_size,), jnp.int32),
    }
    for key, value in self.dataset.split(self.dataset.train_split).items():
      if key not in batch:
        batch[key] = jax.ShapeDtypeStruct((rows // self.group_size, *value.shape[1:]), value.dtype)

    def fresh(batch):
      samples = self._fresh(self.source.variables["params"], batch, jax.random.key(0))
      return {**samples, "old_log_probs": samples["mask"] * 0.0, "advantages": samples["rewards"]}

    return jax.eval_shape(fresh, batch)

  def _fresh(self, params, batch, rng) -> dict[str, Any]:
    samples = self.sample(params, batch, rng, self.group_size, self.temperature)
    if self.beta > 0:
      samples["reference_log_probs"] = self.log_probs(self.reference_params_or_source(), samples)[0]
    return samples

  def reference_params_or_source(self):
    """The placed reference, or (before placement, for shapes only) the pretrained weights."""
    return self._reference if self._reference is not None else self.source.variables["params"]

  # --- The loss -------------------------------------------------------------------------------

  def loss_fn(self, params, model_state, batch, rng, step):
    estimator = self.estimator
    reuse = estimator.updates_per_batch
    if reuse == 1:
      fresh = jnp.asarray(True)
      samples = self._fresh(sg(params), batch, rng)
    else:
      fresh = step % reuse == 0
      stored = model_state[ROLLOUT]
      keep = {k: stored[k] for k in stored if k not in ("old_log_probs", "advantages")}
      samples = jax.lax.cond(fresh, lambda: self._fresh(sg(params), batch, rng), lambda: keep)
    mask = samples["mask"]
    log_probs, entropy = self.log_probs(params, samples)
    # Fresh samples come from these very parameters: the old policy is the current one.
    old_log_probs = sg(log_probs)
    if reuse > 1:
      old_log_probs = jnp.where(fresh, old_log_probs, stored["old_log_probs"])
    rewards = samples["rewards"]
    metrics = {}  # no KL without the reference (beta = 0): the evaluator measures it
    shaped = rewards
    if self.beta > 0:
      reference = samples["reference_log_probs"]
      kl_old = kl_per_token(old_log_probs, reference, estimator.kl_estimator)
      metrics["kl"] = ((kl_per_token(old_log_probs, reference, "k3") * mask).sum(-1)).mean()
      if estimator.kl_in == "reward":
        shaped = rewards - self.beta * (kl_old * mask).sum(-1)
    groups = shaped.reshape(-1, self.group_size)
    advantages = estimator.advantages(groups).reshape(-1)
    if reuse > 1:
      advantages = jnp.where(fresh, advantages, stored["advantages"])
    per_token, clipped = clipped_surrogate(
      log_probs, old_log_probs, sg(advantages), estimator.clip_epsilon
    )
    if self.beta > 0 and estimator.kl_in == "loss":
      per_token = per_token + self.beta * kl_per_token(
        log_probs, samples["reference_log_probs"], estimator.kl_estimator
      )
    loss = normalise(per_token, mask, estimator.loss_type)
    raw = rewards.reshape(-1, self.group_size)
    metrics.update(
      {
        "reward": rewards.mean(),
        "reward_std": rewards.std(),
        "completion_length": mask.sum(-1).mean(),
        "zero_variance_groups": (raw.std(1) == 0).mean(),
        "clip_fraction": masked_mean(clipped, mask),
        "entropy": masked_mean(sg(entropy), mask),
        # Completions that filled every slot without an EOS.
        "truncated": (mask[:, -1] & (samples["completions"][:, -1] != self.eos_id)).mean(),
        **{f"reward/{n}": v.mean() for n, v in samples["components"].items()},
      }
    )
    if reuse > 1:
      model_state = {
        **model_state,
        ROLLOUT: {**samples, "old_log_probs": old_log_probs, "advantages": advantages},
      }
    return loss, (metrics, model_state)

  # --- The reward evaluator's view ------------------------------------------------------------

  def policy_samples(self, params, batch, rng, group_size, temperature=None):
    temperature = self.temperature if temperature is None else temperature
    samples = self.sample(params, batch, rng, group_size, temperature)
    mask = samples["mask"]
    # The KL between the two distributions the samples were drawn from (tempered alike); the
    # perplexities under the models themselves (temperature 1).
    policy = self.log_probs(params, samples, temperature)[0]
    reference = self.log_probs(self.reference_params(), samples, temperature)[0]
    if temperature not in (0.0, 1.0):
      policy_nll = -(self.log_probs(params, samples, 1.0)[0] * mask).sum(-1)
      reference_nll = -(self.log_probs(self.reference_params(), samples, 1.0)[0] * mask).sum(-1)
    else:
      policy_nll, reference_nll = -(policy * mask).sum(-1), -(reference * mask).sum(-1)
    return {
      "reward": samples["rewards"],
      **{f"reward/{n}": v for n, v in samples["components"].items()},
      "length": mask.sum(-1).astype(jnp.float32),
      "kl": (kl_per_token(policy, reference, "k3") * mask).sum(-1),
      "policy_nll": policy_nll,
      "reference_nll": reference_nll,
      "completions": samples["completions"],
    }

  def describe(self, prompt, completion):
    if self.tokenizer is None:
      return str(list(prompt)), str(list(completion))
    drop = lambda ids: [int(i) for i in ids if int(i) != self.pad_id]
    return self.tokenizer.decode(drop(prompt)), self.tokenizer.decode(drop(completion))
