"""Optimizers, schedules and the weight-decay mask."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ssl_jax.config_base import base_config
from ssl_jax.models.resnet import ResNet
from ssl_jax.models.transformer import TransformerEncoder
from ssl_jax.optim import (
  build_optimizer,
  learning_rate_schedule,
  weight_decay_mask,
  weight_decay_schedule,
)
from ssl_jax.registry import ConfigError


def _paths(tree):
  return {
    "/".join(str(getattr(k, "key", k)) for k in path): leaf
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def test_weight_decay_mask_skips_biases_and_norm_scales():
  params = ResNet(stage_sizes=(1,), width=4).init(
    jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False
  )["params"]
  mask = _paths(weight_decay_mask(params))
  assert mask["Conv_0/kernel"] is True
  assert mask["BatchNorm_0/scale"] is False and mask["BatchNorm_0/bias"] is False
  encoder = TransformerEncoder(
    vocab_size=11, width=8, depth=1, num_heads=2, mlp_dim=16, max_length=4
  )
  params = encoder.init(
    jax.random.key(0), jnp.zeros((1, 4), jnp.int32), jnp.ones((1, 4), bool), train=False
  )["params"]
  mask = _paths(weight_decay_mask(params))
  assert mask["embed/token_embed/embedding"] is True
  assert mask["block_0/attention/query/kernel"] is True
  assert mask["block_0/attention/query/bias"] is False
  assert mask["block_0/attention_norm/scale"] is False
  assert mask["final_norm/bias"] is False


def test_adamw_decays_kernels_but_not_biases():
  optim = base_config().optim
  optim.update(name="adamw", learning_rate=0.1, weight_decay=0.5)
  tx, _ = build_optimizer(optim, total_steps=10, batch_size=256)
  params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}}
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero_grads, tx.init(params), params)
  # Step 0 of a cosine schedule with no warmup has lr 0.1: kernel -= 0.1 * 0.5 * 1.
  np.testing.assert_allclose(updates["dense"]["kernel"], -0.05, rtol=1e-6)
  np.testing.assert_array_equal(updates["dense"]["bias"], 0.0)


def test_warmup_cosine_schedule_values():
  optim = base_config().optim
  optim.update(learning_rate=1.0, warmup_steps=10, end_lr_factor=0.1)
  schedule = learning_rate_schedule(optim, total_steps=110, batch_size=256)
  np.testing.assert_allclose(schedule(0), 0.0)
  np.testing.assert_allclose(schedule(5), 0.5, rtol=1e-6)
  np.testing.assert_allclose(schedule(10), 1.0, rtol=1e-6)
  np.testing.assert_allclose(schedule(60), 0.1 + 0.9 * 0.5, rtol=1e-5)  # Half-way down.
  np.testing.assert_allclose(schedule(110), 0.1, rtol=1e-5)


@pytest.mark.parametrize(
  "scaling, expected", [("none", 0.3), ("linear", 0.6), ("sqrt", 0.3 * 2**0.5)]
)
def test_learning_rate_scaling_rules(scaling, expected):
  optim = base_config().optim
  optim.update(learning_rate=0.3, lr_scaling=scaling, schedule="constant")
  schedule = learning_rate_schedule(optim, total_steps=10, batch_size=512)
  np.testing.assert_allclose(schedule(3), expected, rtol=1e-6)


def test_lars_and_sgd_build_and_step_and_clip():
  params = {"w": jnp.full((3, 3), 2.0), "bias": jnp.ones((3,))}
  grads = {"w": jnp.full((3, 3), 100.0), "bias": jnp.full((3,), 100.0)}
  for name in ("lars", "sgd"):
    optim = base_config().optim
    optim.update(name=name, learning_rate=0.1, clip_norm=1.0, schedule="constant")
    tx, _ = build_optimizer(optim, total_steps=5, batch_size=256)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
  # SGD with clipping: the clipped gradient has norm 1, so the update has norm lr * 1.
  np.testing.assert_allclose(optax.tree.norm(updates), 0.1, rtol=1e-5)


def test_unknown_optimizer_and_schedule_are_clear_errors():
  optim = base_config().optim
  optim.name = "adam_w"
  with pytest.raises(ConfigError, match=r"adam_w.*valid.*adamw"):
    build_optimizer(optim, 10, 256)
  optim = base_config().optim
  optim.schedule = "linear"
  with pytest.raises(ConfigError, match=r"'linear'.*cosine"):
    build_optimizer(optim, 10, 256)
  assert isinstance(optim, ml_collections.ConfigDict)


def test_weight_decay_ramp_follows_dinos_cosine_and_reaches_the_update():
  optim = base_config().optim
  optim.update(learning_rate=0.1, weight_decay=0.04, weight_decay_end=0.4, schedule="constant")
  schedule = weight_decay_schedule(optim, total_steps=100)
  np.testing.assert_allclose(
    [float(schedule(s)) for s in (0, 50, 100, 200)], [0.04, 0.22, 0.4, 0.4], rtol=1e-6
  )
  tx, _ = build_optimizer(optim, total_steps=100, batch_size=256)
  params = {"w": jnp.ones((2, 2)), "bias": jnp.ones(2)}
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  for step in range(51):
    updates, state = tx.update(zeros, state, params)
    if step in (0, 50):  # Zero gradients: the update is the decoupled decay alone.
      np.testing.assert_allclose(updates["w"], -0.1 * float(schedule(step)), rtol=1e-5)
      np.testing.assert_array_equal(updates["bias"], 0.0)  # Biases never decay.
  optim.name = "lars"
  with pytest.raises(ConfigError, match="weight_decay_end"):
    build_optimizer(optim, total_steps=100, batch_size=256)
