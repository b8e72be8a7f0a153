"""Every vision pretext method: its loss against hand-computed values, the properties that
define it, and one sharded train step on 8 fake devices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import load_config

from ssl_jax import parallel, train
from ssl_jax.tasks import byol, dino, mae, moco_v3, reconstruction, redundancy, simsiam
from ssl_jax.tasks.vision import TARGET, cosine_momentum

RNG = np.random.default_rng(0)


def _z(n=6, d=4):
  return jnp.asarray(RNG.normal(size=(n, d)), jnp.float32)


# --- Losses against their formulas, computed by hand in numpy -------------------------------


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_byol_loss_is_two_minus_two_cosine():
  p, z = _z(), _z()
  expected = np.mean(2 - 2 * np.sum(_unit(p) * _unit(z), -1))
  np.testing.assert_allclose(byol.byol_loss(p, z), expected, rtol=1e-5)


def test_simsiam_loss_and_its_minimum():
  p1, p2, z1, z2 = _z(), _z(), _z(), _z()
  expected = (
    -(np.mean(np.sum(_unit(p1) * _unit(z2), -1)) + np.mean(np.sum(_unit(p2) * _unit(z1), -1))) / 2
  )
  np.testing.assert_allclose(simsiam.simsiam_loss(p1, p2, z1, z2), expected, rtol=1e-5)
  np.testing.assert_allclose(simsiam.simsiam_loss(z2, z1, z1, z2), -1.0, rtol=1e-6)


@pytest.mark.parametrize("loss", ["byol", "simsiam"])
def test_stop_gradient_blocks_the_target_branch(loss):
  p, z = _z(), _z()
  if loss == "byol":
    fn = byol.byol_loss
  else:
    fn = lambda p, z: simsiam.simsiam_loss(p, p, z, z)
  grad_p, grad_z = jax.grad(fn, argnums=(0, 1))(p, z)
  assert np.abs(np.asarray(grad_p)).sum() > 0
  np.testing.assert_array_equal(grad_z, np.zeros_like(grad_z))


def test_moco_contrastive_matches_cross_entropy_times_2t():
  q, k, t = _z(), _z(), 0.2
  logits = _unit(q) @ _unit(k).T / t
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -np.mean(np.diag(log_probs)) * 2 * t
  np.testing.assert_allclose(moco_v3.moco_contrastive(q, k, t), expected, rtol=1e-5)
  grad_k = jax.grad(moco_v3.moco_contrastive, argnums=1)(q, k, t)
  np.testing.assert_array_equal(grad_k, np.zeros_like(grad_k))


def test_barlow_twins_terms_match_the_formula():
  z1, z2, lam = _z(8, 3), _z(8, 3), 0.5
  s = lambda z: (np.asarray(z) - np.mean(z, 0)) / np.sqrt(np.var(z, 0) + 1e-5)
  c = s(z1).T @ s(z2) / 8
  on = np.sum((1 - np.diag(c)) ** 2)
  off = np.sum(c**2) - np.sum(np.diag(c) ** 2)
  loss, got_on, got_off = redundancy.barlow_twins_loss(z1, z2, lam)
  np.testing.assert_allclose([got_on, got_off, loss], [on, off, on + lam * off], rtol=1e-4)
  # Identical, decorrelated, unit-variance views have zero loss.
  eye = jnp.concatenate([jnp.eye(4), -jnp.eye(4)]) * 1.0
  np.testing.assert_allclose(redundancy.barlow_twins_loss(eye, eye, 1.0)[0], 0.0, atol=1e-4)


def test_vicreg_terms_match_the_formula():
  z1, z2 = _z(8, 3), _z(8, 3)
  sim = np.mean((np.asarray(z1) - np.asarray(z2)) ** 2)
  var = lambda z: np.mean(np.maximum(0, 1 - np.sqrt(np.var(z, 0, ddof=1) + 1e-4)))

  def cov(z):
    z = np.asarray(z) - np.mean(z, 0)
    c = z.T @ z / 7
    return (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / 3

  loss, terms = redundancy.vicreg_loss(z1, z2, 25.0, 25.0, 1.0)
  np.testing.assert_allclose(
    [terms["invariance"], terms["variance"], terms["covariance"]],
    [sim, var(z1) + var(z2), cov(z1) + cov(z2)],
    rtol=1e-4,
  )
  np.testing.assert_allclose(
    loss, 25 * sim + 25 * (var(z1) + var(z2)) + cov(z1) + cov(z2), rtol=1e-4
  )


def test_dino_loss_pairs_each_teacher_view_with_every_other_student_view():
  b, k = 2, 5
  student, teacher, center = _z(4 * b, k), _z(2 * b, k), _z(1, k)[0]
  ts, tt = 0.1, 0.05
  softmax = lambda x: (
    np.exp(x - x.max(-1, keepdims=True))
    / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)
  )
  t = softmax((np.asarray(teacher) - np.asarray(center)) / tt).reshape(2, b, k)
  logp = np.log(softmax(np.asarray(student) / ts)).reshape(4, b, k)
  pairs = [np.mean(np.sum(-t[i] * logp[j], -1)) for i in range(2) for j in range(4) if i != j]
  np.testing.assert_allclose(
    dino.dino_loss(student, teacher, center, ts, tt), np.mean(pairs), rtol=1e-5
  )
  assert len(pairs) == 6


def test_dino_center_and_temperature_schedule():
  center, teacher = jnp.ones(3), jnp.asarray([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
  np.testing.assert_allclose(
    dino.update_center(center, teacher, 0.9), 0.9 * 1 + 0.1 * np.array([2.0, 2.0, 2.0]), rtol=1e-6
  )
  temps = [float(dino.teacher_temperature(s, 0.04, 0.07, 30)) for s in (0, 15, 30, 100)]
  np.testing.assert_allclose(temps, [0.04, 0.055, 0.07, 0.07], rtol=1e-5)


def test_mae_masking_rate_and_loss_ignores_visible_patches():
  keep, restore, mask = mae.random_masking(jax.random.key(0), 64, 16, 0.75)
  assert keep.shape == (64, 4)
  np.testing.assert_array_equal(mask.sum(1), np.full(64, 12.0))
  # Kept indices are exactly the unmasked ones.
  np.testing.assert_array_equal(np.take_along_axis(np.asarray(mask), np.asarray(keep), 1), 0)
  patches = _z(64 * 16, 4).reshape(64, 16, 4)
  prediction = patches + 1.0
  changed = jnp.where(mask[..., None] == 0, prediction + 100.0, prediction)  # Visible only.
  for norm in (False, True):
    base = mae.mae_loss(prediction, patches, mask, norm)
    np.testing.assert_allclose(mae.mae_loss(changed, patches, mask, norm), base, rtol=1e-6)
  np.testing.assert_allclose(mae.mae_loss(prediction, patches, mask, False), 1.0, rtol=1e-6)


def test_mae_normalised_targets_use_the_unbiased_variance():
  # The MAE reference: target = (target - mean) / (var + 1e-6) ** 0.5 with torch's var (ddof=1).
  patches = jnp.asarray([[[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0]]])
  mask = jnp.ones((1, 2))
  prediction = jnp.zeros_like(patches)
  expected = []
  for patch in np.asarray(patches[0]):
    target = (patch - patch.mean()) / np.sqrt(patch.var(ddof=1) + 1e-6)
    expected.append(np.mean(target**2))  # (n - 1) / n = 0.75 for unit-variance targets
  loss = mae.mae_loss(prediction, patches, mask, True)
  np.testing.assert_allclose(loss, np.mean(expected), rtol=1e-5)
  np.testing.assert_allclose(loss, 0.75, rtol=1e-5)


def test_rotations_and_corruption():
  images = jnp.asarray(RNG.random((2, 4, 4, 1)), jnp.float32)
  rotated, labels = reconstruction.rotations(images)
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2, 3, 3])
  np.testing.assert_array_equal(rotated[2], np.rot90(images[0], 1, axes=(0, 1)))
  np.testing.assert_array_equal(rotated[4], images[0][::-1, ::-1])
  corrupted, erased = reconstruction.corrupt(
    jax.random.key(1), jnp.ones((64, 8, 8, 1)), 0.0, 0.25, 2
  )
  assert abs(float(erased.mean()) - 0.25) < 0.03
  np.testing.assert_array_equal(corrupted, 1 - erased)


def test_cosine_momentum_schedule():
  values = [float(cosine_momentum(s, 100, 0.99)) for s in (0, 50, 100)]
  np.testing.assert_allclose(values, [0.99, 0.995, 1.0], rtol=1e-7)


# --- One sharded train step of every method on the digits recipe -----------------------------

TINY = {
  "simclr": dict(projector_hidden_dim=16, projector_dim=8),
  "byol": dict(projector_hidden_dim=16, projector_dim=8, predictor_hidden_dim=16),
  "simsiam": dict(projector_hidden_dim=16, projector_dim=8, predictor_hidden_dim=4),
  "moco_v3": dict(projector_hidden_dim=16, projector_dim=8, predictor_hidden_dim=16),
  "barlow_twins": dict(projector_hidden_dim=16, projector_dim=16),
  "vicreg": dict(projector_hidden_dim=16, projector_dim=16),
  "dino": dict(out_dim=32, hidden_dim=16, bottleneck_dim=8, num_local_crops=2),
  "mae": dict(decoder_width=16, decoder_depth=1, decoder_heads=2),
  "rotation": {},
  "denoising": dict(decoder_hidden_dim=16),
}


def tiny_vision_config(method):
  config = load_config(f"{method}_digits")
  config.task_kwargs.update(TINY[method])
  if config.model == "vit":
    config.model_kwargs.update(dict(width=16, depth=1, num_heads=2, mlp_dim=32))
  else:
    config.model_kwargs.update(dict(stage_sizes=(1,), width=8))
  config.online_probe = True
  config.batch_size = 32
  config.optim.warmup_steps = 0  # The first step must move the weights.
  return config


# A ResNet method and the ViT one in the default suite; the rest in e2e.
@pytest.mark.parametrize(
  "method",
  [m if m in ("simclr", "mae") else pytest.param(m, marks=pytest.mark.e2e) for m in sorted(TINY)],
)
def test_one_train_step_on_8_devices(method, devices):
  config = tiny_vision_config(method)
  mesh = parallel.make_mesh(config.mesh)
  assert mesh.size == 8
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
    before = jax.device_get(run.state)
    state, metrics = run.train_step(run.state, run.example)
    metrics = jax.device_get(metrics)
    after = jax.device_get(state)
  assert np.isfinite(metrics["loss"]) and metrics["grad_norm"] > 0
  assert 0.0 <= metrics["online_probe_accuracy"] <= 1.0
  changed = jax.tree.map(
    lambda a, b: not np.array_equal(a, b), before.params["encoder"], after.params["encoder"]
  )
  assert any(jax.tree.leaves(changed))
  task = run.task
  if task.target_modules:
    # target' = m * target + (1 - m) * online' at the scheduled momentum of step 0.
    m = float(cosine_momentum(0, config.total_steps, task.base_momentum))
    for name in task.target_modules:
      expected = jax.tree.map(
        lambda t, o: m * t + (1 - m) * o,
        before.model_state[TARGET][name]["params"],
        after.params[name],
      )
      jax.tree.map(
        lambda e, g: np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-7),
        expected,
        after.model_state[TARGET][name]["params"],
      )
  if method == "dino":
    assert "dino_step" not in after.model_state  # the trainer's step drives the schedules
    assert np.abs(after.model_state["dino_center"]).sum() > 0


@pytest.mark.e2e
def test_stop_gradient_in_byol_task_target_gets_no_gradient(devices):
  config = tiny_vision_config("byol")
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
    state = run.state
    grad = jax.grad(
      lambda ms: run.task.loss_fn(state.params, ms, run.example, jax.random.key(0), state.step)[0]
    )(state.model_state)
  target_grad = jax.tree.leaves(grad[TARGET])
  assert target_grad and all(np.all(np.asarray(g) == 0) for g in target_grad)


def test_mae_needs_a_vit():
  from ssl_jax.registry import ConfigError

  config = tiny_vision_config("mae")
  config.model = "resnet"
  config.model_kwargs = ml_collections.ConfigDict(dict(stage_sizes=(1,), width=8))
  with pytest.raises(ConfigError, match="needs a ViT encoder.*vit_b"):
    train.build_task(config, train.build_dataset(config, None))


def test_online_probe_skips_unlabelled_records_and_is_detached(devices):
  """Cross entropy over labelled rows only (label -1 = unlabelled), on stop-gradient features."""
  config = tiny_vision_config("simsiam")
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    task = train.setup(config, None, mesh).task
  features = _z(4, 3)
  kernel = jnp.asarray(RNG.normal(size=(3, 10)), jnp.float32)
  params = {"online_probe": {"Dense_0": {"kernel": kernel, "bias": jnp.zeros(10)}}}
  batch = {"label": jnp.array([3, -1, 7, -1])}
  loss, metrics = task.with_probe(jnp.float32(1.0), {}, params, features, batch)
  logits = np.asarray(features) @ np.asarray(kernel)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  expected = -(log_p[0, 3] + log_p[2, 7]) / 2
  np.testing.assert_allclose(metrics["online_probe_loss"], expected, rtol=1e-5)
  np.testing.assert_allclose(loss, 1.0 + expected, rtol=1e-5)
  hits = (logits[0].argmax() == 3) + (logits[2].argmax() == 7)
  np.testing.assert_allclose(metrics["online_probe_accuracy"], hits / 2)
  grad = jax.grad(lambda f: task.with_probe(0.0, {}, params, f, batch)[0])(features)
  assert not np.asarray(grad).any()


@pytest.mark.e2e
def test_dino_freezes_the_prototypes_for_the_first_steps(devices):
  config = tiny_vision_config("dino")
  config.task_kwargs.freeze_last_layer_steps = 3
  mesh = parallel.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    run = train.setup(config, None, mesh)
  task, params, model_state = run.task, run.state.params, run.state.model_state
  batch = jax.device_get(run.example)

  def head_grads(step):
    step = jnp.asarray(step, jnp.int32)
    grads = jax.grad(lambda p: task.loss_fn(p, model_state, batch, jax.random.key(0), step)[0])(
      params
    )
    return grads["head"]

  frozen, free = head_grads(2), head_grads(3)
  assert not np.asarray(frozen["prototypes"]).any()
  assert np.abs(np.asarray(free["prototypes"])).max() > 0
  # The rest of the head learns from the first step.
  assert np.abs(np.asarray(frozen["Dense_0"]["kernel"])).max() > 0
