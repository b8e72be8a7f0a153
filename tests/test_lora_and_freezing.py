"""LoRA, freezing and layer-wise learning-rate decay (ssl_jax/adapt)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ssl_jax.adapt import freeze, lora
from ssl_jax.models.transformer import TransformerEncoder
from ssl_jax.registry import ConfigError

TOKENS = jnp.arange(48).reshape(3, 16) % 50
ARGS = (TOKENS, TOKENS >= 0)


@pytest.fixture(scope="module")
def base():
  model = TransformerEncoder(vocab_size=50, size="tiny", max_length=16, dropout_rate=0.0)
  variables = model.init(jax.random.key(0), *ARGS, train=False)
  layers = lora.find_layers(model, variables, *ARGS, train=False)
  return model, variables, layers


def _random_adapters(layers, config, seed=1):
  """Adapters with a non-zero "b" (a fresh one is zero and changes nothing)."""
  adapters = lora.init_adapters(jax.random.key(seed), layers, config)
  return jax.tree.map(
    lambda x: x + 0.1 * jax.random.normal(jax.random.key(seed + 1), x.shape), adapters
  )


def test_find_layers_gives_every_projection_with_its_shapes(base):
  _, _, layers = base
  shapes = {layer.path: (layer.in_shape, layer.out_shape) for layer in layers}
  assert len(shapes) == 2 * 6  # query, key, value, out, mlp_in, mlp_out per block
  assert shapes["block_0/attention/query"] == ((64,), (2, 32))
  assert shapes["block_1/attention/out"] == ((2, 32), (64,))
  assert shapes["block_1/mlp_in"] == ((64,), (256,))


def test_fresh_adapters_leave_the_model_unchanged_and_target_by_pattern(base):
  model, variables, layers = base
  config = lora.LoraConfig(rank=4)
  adapters = lora.init_adapters(jax.random.key(1), layers, config)
  assert sorted(adapters) == [
    "block_0/attention/query",
    "block_0/attention/value",
    "block_1/attention/query",
    "block_1/attention/value",
  ]
  assert adapters["block_0/attention/query"]["a"].shape == (64, 4)
  assert adapters["block_0/attention/query"]["b"].shape == (4, 64)
  np.testing.assert_array_equal(
    lora.apply(model, variables, adapters, config, *ARGS, train=False),
    model.apply(variables, *ARGS, train=False),
  )
  with pytest.raises(ValueError, match=r"'nothing' match no layer.*block_0/attention/query"):
    lora.init_adapters(jax.random.key(1), layers, lora.LoraConfig(targets="nothing"))


def test_merged_model_equals_the_adapted_one_and_unmerge_restores_the_base(base):
  model, variables, layers = base
  config = lora.LoraConfig(rank=4, alpha=8.0, targets=r"attention/(query|value|out)$|mlp_")
  adapters = _random_adapters(layers, config)
  adapted = lora.apply(model, variables, adapters, config, *ARGS, train=False)
  plain = model.apply(variables, *ARGS, train=False)
  assert float(jnp.abs(adapted - plain).max()) > 0.1  # the adapters do something
  merged = lora.merge(variables["params"], adapters, config)
  np.testing.assert_allclose(
    model.apply({"params": merged}, *ARGS, train=False), adapted, atol=1e-5
  )
  restored = lora.unmerge(merged, adapters, config)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(variables["params"])):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_lora_update_by_hand_on_one_dense_layer():
  import flax.linen as nn

  dense = nn.Dense(3)
  x = jnp.arange(8.0).reshape(2, 4) / 8
  variables = dense.init(jax.random.key(0), x)
  config = lora.LoraConfig(rank=2, alpha=6.0, targets="")
  layers = lora.find_layers(dense, variables, x)
  assert [(layer.path, layer.in_shape, layer.out_shape) for layer in layers] == [("", (4,), (3,))]
  adapters = _random_adapters(layers, config)
  a, b = adapters[""]["a"], adapters[""]["b"]
  expected = x @ variables["params"]["kernel"] + variables["params"]["bias"] + 3.0 * x @ a @ b
  np.testing.assert_allclose(lora.apply(dense, variables, adapters, config, x), expected, rtol=1e-5)


def test_lora_dropout_only_with_a_key(base):
  model, variables, layers = base
  config = lora.LoraConfig(rank=4, dropout=0.5)
  adapters = _random_adapters(layers, config)
  run = lambda key: lora.apply(
    model, variables, adapters, config, *ARGS, train=False, dropout_key=key
  )
  np.testing.assert_array_equal(run(None), run(None))
  assert float(jnp.abs(run(jax.random.key(3)) - run(None)).max()) > 1e-3
  np.testing.assert_array_equal(run(jax.random.key(3)), run(jax.random.key(3)))


def test_a_step_on_a_frozen_base_changes_only_the_adapters(base):
  model, variables, layers = base
  config = lora.LoraConfig(rank=4)
  adapters = lora.init_adapters(jax.random.key(1), layers, config)
  params = {"base": variables["params"], "lora": adapters}
  labels = freeze.freeze_labels(params, "regex:^base/")
  tx = freeze.freeze(optax.adamw(1e-2, weight_decay=0.1), labels)

  def loss(params):
    hidden = lora.apply(
      model, {"params": params["base"]}, params["lora"], config, *ARGS, train=False
    )
    return jnp.mean((hidden - 1.0) ** 2)

  grads = jax.grad(loss)(params)
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  for old_leaf, new_leaf in zip(jax.tree.leaves(params["base"]), jax.tree.leaves(new["base"])):
    np.testing.assert_array_equal(old_leaf, new_leaf)
  for path, adapter in new["lora"].items():
    # b moves off zero; a gets no gradient through b = 0 on the first step (as in the paper),
    # so it moves by weight decay alone: a * (1 - lr * wd).
    assert float(jnp.abs(adapter["b"]).min()) > 0, path
    np.testing.assert_array_equal(grads["lora"][path]["a"], 0.0)
    np.testing.assert_allclose(adapter["a"], adapters[path]["a"] * (1 - 1e-2 * 0.1), rtol=1e-6)
  assert lora.count_parameters(adapters) == 4 * (64 * 4 + 4 * 64)


PARAMS = {
  "embed": {"embedding": jnp.ones((5, 2))},
  "block_0": {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}},
  "block_1": {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}},
  "final_norm": {"scale": jnp.ones(2)},
  "head": {"kernel": jnp.ones((2, 3))},
}


@pytest.mark.parametrize(
  "strategy, trainable",
  [
    ("none", {"embed", "block_0", "block_1", "final_norm", "head"}),
    ("all_but_head", {"head"}),
    ("top_blocks:1", {"block_1", "head"}),
    ("top_blocks:0", {"head"}),
    ("regex:^(embed|block_0)/", {"block_1", "final_norm", "head"}),
  ],
)
def test_freeze_labels(strategy, trainable):
  labels = freeze.freeze_labels(PARAMS, strategy)
  got = {
    top
    for top, tree in labels.items()
    if all(label == freeze.TRAINABLE for label in jax.tree.leaves(tree))
  }
  assert got == trainable
  frozen = {
    top
    for top, tree in labels.items()
    if all(label == freeze.FROZEN for label in jax.tree.leaves(tree))
  }
  assert frozen == set(PARAMS) - trainable


def test_freeze_errors_name_the_choices():
  with pytest.raises(ConfigError, match=r"Unknown freezing strategy 'top'.*all_but_head"):
    freeze.freeze_labels(PARAMS, "top")
  with pytest.raises(ConfigError, match="has 2 blocks"):
    freeze.freeze_labels(PARAMS, "top_blocks:3")
  with pytest.raises(ConfigError, match="freezes every parameter"):
    freeze.freeze_labels(PARAMS, "regex:.")


def test_frozen_leaves_stay_bitwise_equal_under_adamw_with_weight_decay():
  params = jax.tree.map(lambda x: x + 0.5, PARAMS)
  tx = freeze.freeze(
    optax.adamw(0.1, weight_decay=0.5), freeze.freeze_labels(params, "regex:block_0|embed")
  )
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  new = params
  for _ in range(3):
    updates, state = tx.update(grads, state, new)
    new = optax.apply_updates(new, updates)
  for top in ("embed", "block_0"):
    for a, b in zip(jax.tree.leaves(params[top]), jax.tree.leaves(new[top])):
      np.testing.assert_array_equal(a, b)
  for top in ("block_1", "final_norm", "head"):
    assert all(
      float(jnp.abs(a - b).min()) > 0.1
      for a, b in zip(jax.tree.leaves(params[top]), jax.tree.leaves(new[top]))
    )


def test_layerwise_decay_scales_each_depth():
  depths = freeze.layer_depths(PARAMS)
  assert depths["embed"]["embedding"] == 0 and depths["block_1"]["dense"]["kernel"] == 2
  assert depths["head"]["kernel"] == depths["final_norm"]["scale"] == 3
  tx = freeze.layerwise_decay(optax.sgd(1.0), blocks=2, decay=0.5)
  grads = jax.tree.map(jnp.ones_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  expected = {"embed": -0.125, "block_0": -0.25, "block_1": -0.5, "final_norm": -1.0, "head": -1.0}
  for top, value in expected.items():
    for leaf in jax.tree.leaves(updates[top]):
      np.testing.assert_allclose(leaf, value)
  with pytest.raises(ConfigError, match=r"\(0, 1\]"):
    freeze.layerwise_decay(optax.sgd(1.0), blocks=2, decay=1.5)
  with pytest.raises(ConfigError, match="set up for 3 blocks; the params have 2"):
    freeze.layerwise_decay(optax.sgd(1.0), blocks=3, decay=0.5).init(PARAMS)


def test_lora_on_convolutions_merges_into_the_kernels():
  from ssl_jax.models.resnet import ResNet

  model = ResNet(stage_sizes=(1, 1), width=8, stem="cifar")
  images = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1))
  variables = model.init(jax.random.key(1), images, train=False)
  layers = lora.find_layers(model, variables, images, train=False)
  # A strided 3x3 conv, and the block's 1x1 projection shortcut, with their kernel shapes.
  shapes = {layer.path: (layer.in_shape, layer.out_shape) for layer in layers}
  assert shapes["BasicBlock_1/Conv_0"] == ((3, 3, 8), (16,))
  assert shapes["BasicBlock_1/Conv_2"] == ((1, 1, 8), (16,))
  config = lora.LoraConfig(rank=2, alpha=4.0, targets=r"Conv_\d+$")
  adapters = _random_adapters(layers, config)
  adapted = lora.apply(model, variables, adapters, config, images, train=False)
  assert float(jnp.abs(adapted - model.apply(variables, images, train=False)).max()) > 0.05
  merged = {**variables, "params": lora.merge(variables["params"], adapters, config)}
  np.testing.assert_allclose(model.apply(merged, images, train=False), adapted, atol=1e-5)
