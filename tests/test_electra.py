"""ELECTRA: labels for replaced tokens (a sample equal to the original is real), the generator's
size and shared embeddings, the masking split, the loss weighting, and a run end to end."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import load_config, override

from ssl_jax import train
from ssl_jax.registry import ConfigError
from ssl_jax.tasks.electra import replaced_token_labels


def tiny_electra_config(**overrides):
  config = load_config("electra_python_text")
  config.model_kwargs.update(dict(width=32, depth=1, num_heads=4, mlp_dim=64))
  config.data.update(dict(seq_len=32, vocab_size=500, stdlib_docstrings=False))
  config.update(
    dict(batch_size=16, eval_batch_size=32, total_steps=40, log_every=20, checkpoint_every=40)
  )
  config.optim.warmup_steps = 5
  config.optim.learning_rate = 3e-3
  return override(config, overrides)


@pytest.fixture(scope="module")
def electra(tmp_path_factory):
  config = tiny_electra_config()
  run = train.setup(
    config, str(tmp_path_factory.mktemp("electra")), train.parallel.make_mesh(config.mesh)
  )
  return run


def test_replaced_token_labels_count_a_correct_sample_as_real():
  original = jnp.array([[2, 10, 11, 12, 3]])
  corrupted = jnp.array([[2, 10, 17, 12, 3]])  # position 3 was sampled and came out as 12
  np.testing.assert_array_equal(replaced_token_labels(original, corrupted), [[0, 0, 1, 0, 0]])


def test_generator_is_a_quarter_width_and_shares_embeddings(electra):
  params = electra.state.params
  shapes = jax.tree.map(lambda x: x.shape, params)
  assert set(params) >= {"embed", "generator", "discriminator", "generator_head"}
  # One embedding table, at the discriminator's width; neither encoder has its own.
  assert shapes["embed"]["token_embed"]["embedding"][1] == 32
  assert "embed" not in params["generator"] and "embed" not in params["discriminator"]
  # Generator: width 8 (32/4), 1 head, MLP 16, projecting in from and out to width 32.
  assert shapes["generator"]["embed_project"]["kernel"] == (32, 8)
  assert shapes["generator_head"]["dense"]["kernel"] == (8, 32)  # MLM head ends at width 32
  assert shapes["generator"]["block_0"]["mlp_in"]["kernel"] == (8, 16)
  assert shapes["generator"]["block_0"]["attention"]["query"]["kernel"] == (8, 1, 8)
  assert shapes["discriminator"]["block_0"]["attention"]["query"]["kernel"] == (32, 4, 8)


def test_predictions_mask_85_15_and_label_exactly_the_changed_tokens(electra):
  task, batch = electra.task, electra.example
  out = task.replaced_token_predictions(
    electra.state.params, electra.state.model_state, batch, jax.random.key(3), train=False
  )
  tokens = np.asarray(batch["tokens"])
  corrupted, labels = np.asarray(out["corrupted"]), np.asarray(out["labels"])
  np.testing.assert_array_equal(labels, (corrupted != tokens).astype(np.float32))
  # Only chosen positions change; padding and specials never do.
  weights = np.asarray(out["weights"]) > 0
  assert weights.sum() > 0
  assert (np.isin(tokens, (0, 2, 3, 4)) <= (corrupted == tokens)).all()
  # Mask split over many draws: 85% [MASK] / 15% unchanged, no random tokens (generator inputs).
  from ssl_jax.tasks.mlm import bert_mask

  inputs, positions, targets, w = bert_mask(
    jax.random.key(0), jnp.tile(jnp.arange(10, 138)[None], (256, 1)), **task.mask_options
  )
  shown = np.asarray(jnp.take_along_axis(inputs, positions, 1))[np.asarray(w) > 0]
  assert abs((shown == 4).mean() - 0.85) < 0.01
  assert abs((shown == np.asarray(targets)[np.asarray(w) > 0]).mean() - 0.15) < 0.01


def test_loss_is_generator_plus_50_discriminator(electra):
  task, state = electra.task, electra.state
  key = jax.random.key(5)
  loss, (metrics, _) = task.loss_fn(
    state.params, state.model_state, electra.example, key, state.step
  )
  np.testing.assert_allclose(
    loss, metrics["generator_loss"] + 50.0 * metrics["discriminator_loss"], rtol=1e-5
  )
  # The discriminator loss is the mean BCE over real tokens, recomputed by hand.
  _, rng = jax.random.split(key)  # loss_fn splits off the augmentation key first
  out = task.replaced_token_predictions(
    state.params, state.model_state, electra.example, rng, train=True
  )
  bce = np.asarray(optax.sigmoid_binary_cross_entropy(out["discriminator_logits"], out["labels"]))
  real = np.asarray(electra.example["tokens"]) != 0
  np.testing.assert_allclose(metrics["discriminator_loss"], bce[real].mean(), rtol=1e-5)


def test_generator_gets_no_gradient_through_its_samples(electra):
  """The discriminator loss alone must not reach the generator's weights (samples are data),
  except through the shared embeddings."""
  task, state = electra.task, electra.state

  def discriminator_loss(params):
    out = task.replaced_token_predictions(
      params, state.model_state, electra.example, jax.random.key(1), train=False
    )
    return optax.sigmoid_binary_cross_entropy(out["discriminator_logits"], out["labels"]).mean()

  # Jitted: one program over the sharded parameters, not hundreds of eager multi-device ops.
  grads = jax.jit(jax.grad(discriminator_loss))(state.params)
  generator = jax.tree.leaves(grads["generator"]) + jax.tree.leaves(grads["generator_head"])
  assert max(float(jnp.abs(g).max()) for g in generator) == 0.0
  assert float(jnp.abs(grads["embed"]["token_embed"]["embedding"]).max()) > 0


@pytest.mark.e2e
def test_electra_trains_and_reports(tmp_path):
  results = train.train_and_evaluate(tiny_electra_config(), str(tmp_path))
  report = results["evals"]["replaced_token_detection"]
  discriminator = report["electra discriminator"]
  baseline = report["all tokens called original"]
  assert 0 < baseline["detection acc"] < 1
  assert 0 <= discriminator["replaced recall"] <= 1
  assert 0 < report["electra generator"]["masked acc"] <= 1


def test_electra_needs_a_bidirectional_encoder(tmp_path):
  with pytest.raises(ConfigError, match="needs config.model='transformer_encoder'"):
    train.train_and_evaluate(tiny_electra_config(model="transformer_decoder"), str(tmp_path))
