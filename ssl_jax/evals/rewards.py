"""Reward evaluation of a reward-fine-tuned policy beside its frozen reference: held-out prompts
completed `samples_per_prompt` times, their mean reward (and each reward's), the success rate
(reward >= `success_threshold`), the KL to the reference, the completions' perplexity under
the reference model and under the policy, and their length; a few samples printed."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.capabilities import RewardPolicy
from ssl_jax.errors import ConfigError
from ssl_jax.evals.context import EvalContext
from ssl_jax.registry import EVALUATORS

REFERENCE = "reference (before)"
_SHOWN = "reward samples shown"  # EvalContext.shared: the reference's samples print once


def _statistics(
  ctx: EvalContext,
  params: Any,
  rows: dict[str, np.ndarray],
  group_size: int,
  temperature: float | None,
) -> dict[str, np.ndarray]:
  """Per-completion values of `policy_samples` over every prompt of `rows` ([prompts, G])."""
  base_key = jax.random.key(ctx.seed)
  names: list[str] = []

  def per_prompt(params, model_state, batch):
    del model_state
    key = jax.random.fold_in(base_key, batch.pop("index")[0])
    values = ctx.task.policy_samples(params, batch, key, group_size, temperature)
    completions = values.pop("completions")
    names[:] = sorted(values)
    stats = jnp.stack([values[n].astype(jnp.float32) for n in names], -1)
    rows_ = batch["prompt"].shape[0]
    # Tokens ride along as floats (exact below 2**24) so one array comes back per batch.
    packed = jnp.concatenate([stats, completions.astype(jnp.float32)], -1)
    return packed.reshape(rows_, group_size, -1)

  rows = dict(rows)
  count = len(rows["prompt"])
  rows["index"] = np.repeat(np.arange(-(-count // ctx.batch_size), dtype=np.int32), ctx.batch_size)[
    :count
  ]
  packed = ctx.apply(jax.jit(per_prompt), (params, {}), rows)
  out = {n: packed[..., i] for i, n in enumerate(names)}
  out["completions"] = packed[..., len(names) :].astype(np.int64)
  return out


def _summary(stats: dict[str, np.ndarray], success_threshold: float) -> dict[str, float]:
  tokens = max(float(stats["length"].sum()), 1.0)
  row = {
    "reward": float(stats["reward"].mean()),
    "reward std": float(stats["reward"].std()),
    "success": float((stats["reward"] >= success_threshold).mean()),
    "kl": float(stats["kl"].mean()),
    "reference ppl": float(np.exp(stats["reference_nll"].sum() / tokens)),
    "policy ppl": float(np.exp(stats["policy_nll"].sum() / tokens)),
    "length": float(stats["length"].mean()),
  }
  for name in sorted(stats):
    if name.startswith("reward/"):
      row[name] = float(stats[name].mean())
  return row


def _print_samples(ctx: EvalContext, who: str, rows, stats, show: int) -> None:
  for i in range(min(show, len(rows["prompt"]))):
    prompt, completion = ctx.task.describe(rows["prompt"][i], stats["completions"][i, 0])
    reward = stats["reward"][i, 0]
    print(f"[{who} sample {i + 1}] {prompt!r} ⟶ {completion!r} (reward {reward:.3f})", flush=True)


def _check_options(options: dict[str, Any], task_class: type) -> None:
  del task_class
  if int(options.get("samples_per_prompt", 4)) < 1:
    raise ConfigError(
      f"config.evals.reward.samples_per_prompt must be >= 1, got {options['samples_per_prompt']!r}."
    )


@EVALUATORS.register("reward", requires=(RewardPolicy,), pairing=_check_options)
def reward(
  ctx: EvalContext,
  split: str = "test",
  samples_per_prompt: int = 4,
  temperature: float = -1.0,
  greedy: bool = False,
  num_prompts: int = 0,
  success_threshold: float = 1.0,
  show: int = 3,
) -> dict[str, dict[str, float]]:
  """{policy: {...}, "reference (before)": {...}} over the prompts of `split` (the first
  `num_prompts`, 0 = all). temperature -1 samples at the task's temperature; `greedy` decodes
  greedily (one completion per prompt). The reference's row is computed once per run."""
  if greedy:
    samples_per_prompt, temperature = 1, 0.0
  elif temperature < 0:
    temperature = None  # the policy's own
  rows = dict(ctx.dataset.split(split))
  if num_prompts:
    rows = {k: np.asarray(v)[:num_prompts] for k, v in rows.items()}
  rows.pop("label", None)
  policy = _statistics(ctx, ctx.variables[0], rows, samples_per_prompt, temperature)
  _print_samples(ctx, "policy", rows, policy, show)
  key = (_SHOWN, split, samples_per_prompt, temperature, num_prompts, success_threshold)
  if key not in ctx.shared:
    before = _statistics(ctx, ctx.task.reference_params(), rows, samples_per_prompt, temperature)
    _print_samples(ctx, "reference", rows, before, show)
    ctx.shared[key] = _summary(before, success_threshold)
  return {ctx.name: _summary(policy, success_threshold), REFERENCE: ctx.shared[key]}
