"""DINO (Caron et al., 2021): self-distillation from a momentum teacher over multi-crop views,
with teacher centering and sharpening (temperature warmup)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.augment import multi_crop
from ssl_jax.data.source import Dataset
from ssl_jax.registry import TASKS
from ssl_jax.tasks.vision import VisionTask, l2_normalize

CENTER = "dino_center"  # model_state key of the teacher's running output mean.


class DINOHead(nn.Module):
  """MLP (GELU) -> bottleneck -> L2 normalise -> weight-normalised linear to `out_dim`
  prototypes. With `norm_last_layer` the weight norm's gain is fixed at 1 (the paper's
  default for stability)."""

  out_dim: int = 65536
  hidden_dim: int = 2048
  bottleneck_dim: int = 256
  num_layers: int = 3
  norm_last_layer: bool = True

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    del train
    init = nn.initializers.truncated_normal(0.02)
    for _ in range(self.num_layers - 1):
      x = nn.gelu(nn.Dense(self.hidden_dim, kernel_init=init)(x))
    x = nn.Dense(self.bottleneck_dim, kernel_init=init)(x)
    x = l2_normalize(x)
    v = self.param("prototypes", init, (x.shape[-1], self.out_dim))
    w = v / jnp.linalg.norm(v, axis=0, keepdims=True).clip(1e-12)
    if not self.norm_last_layer:
      w = w * self.param("gain", nn.initializers.ones, (self.out_dim,))
    return x @ w


def dino_loss(
  student: jnp.ndarray,
  teacher: jnp.ndarray,
  center: jnp.ndarray,
  student_temp: float,
  teacher_temp: jax.Array,
  num_global: int = 2,
) -> jnp.ndarray:
  """Cross entropy between the centred, sharpened teacher distribution of each global view and
  the student's distribution of every *other* view, averaged over the pairs.

  student: [V*B, K] (global views first, then local ones); teacher: [num_global*B, K].
  """
  num_views = student.shape[0] // (teacher.shape[0] // num_global)
  student_logp = jax.nn.log_softmax(student.astype(jnp.float32) / student_temp, axis=-1)
  teacher_p = jax.lax.stop_gradient(
    jax.nn.softmax((teacher.astype(jnp.float32) - center) / teacher_temp, axis=-1)
  )
  student_logp = jnp.split(student_logp, num_views)
  teacher_p = jnp.split(teacher_p, num_global)
  total, pairs = 0.0, 0
  for t_index, t in enumerate(teacher_p):
    for s_index, s in enumerate(student_logp):
      if s_index == t_index:
        continue
      total = total + jnp.mean(jnp.sum(-t * s, axis=-1))
      pairs += 1
  return total / pairs


def update_center(center: jnp.ndarray, teacher: jnp.ndarray, momentum: float) -> jnp.ndarray:
  """EMA of the teacher's batch-mean output (over the global batch under jit)."""
  return momentum * center + (1 - momentum) * jnp.mean(teacher.astype(jnp.float32), axis=0)


def teacher_temperature(
  step: jax.Array, warmup_temp: float, final_temp: float, warmup_steps: int
) -> jax.Array:
  """Linear warmup from `warmup_temp` to `final_temp` over `warmup_steps`, then constant."""
  if warmup_steps <= 0:
    return jnp.asarray(final_temp, jnp.float32)
  progress = jnp.clip(step / warmup_steps, 0.0, 1.0)
  return warmup_temp + (final_temp - warmup_temp) * progress


@TASKS.register("dino")
class DINO(VisionTask):
  """Student encoder -> DINO head on 2 global + `num_local_crops` local views; the teacher
  (EMA of the student) sees the global views only. Features for evaluation come from the
  teacher's encoder, as in the paper. Local views use `config.augment.local` (set its `size`
  and `crop_scale`, e.g. 96 px and (0.05, 0.4) for 224-px globals)."""

  target_modules = ("encoder", "head")
  represent_with_target = True

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    base_momentum: float = 0.996,
    out_dim: int = 65536,
    hidden_dim: int = 2048,
    bottleneck_dim: int = 256,
    norm_last_layer: bool = True,
    num_local_crops: int = 6,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
    warmup_teacher_temp: float = 0.04,
    warmup_teacher_temp_steps: int = 0,
    center_momentum: float = 0.9,
    freeze_last_layer_steps: int = 0,
  ):
    super().__init__(config, dataset, base_momentum)
    self.modules["head"] = DINOHead(
      out_dim, hidden_dim, bottleneck_dim, norm_last_layer=norm_last_layer
    )
    self.num_local_crops = num_local_crops
    self.student_temp = student_temp
    self.temps = (warmup_teacher_temp, teacher_temp, warmup_teacher_temp_steps)
    self.center_momentum = center_momentum
    self.out_dim = out_dim
    self.freeze_last_layer_steps = freeze_last_layer_steps

  def init_heads(self, keys, batch, features, params, model_state):
    self.init_module("head", next(keys), features, params, model_state)
    model_state[CENTER] = jnp.zeros((self.out_dim,), jnp.float32)

  def loss_fn(self, params, model_state, batch, rng, step):
    step_rng, _ = jax.random.split(rng)
    global_views, local_views = multi_crop(
      step_rng, batch["image"], self.views, self.num_local_crops
    )
    chain = ("encoder", "head")
    params = self.freeze_last_layer(params, step)
    # One encoder call per resolution (the paper's MultiCropWrapper).
    (h_global, s_global), model_state = self.forward(chain, params, model_state, global_views)
    student = [s_global]
    if local_views is not None:
      (_, s_local), model_state = self.forward(chain, params, model_state, local_views)
      student.append(s_local)
    teacher, model_state = self.forward_target(self.target_modules, model_state, global_views)
    temp = teacher_temperature(step, *self.temps)
    loss = dino_loss(
      jnp.concatenate(student), teacher, model_state[CENTER], self.student_temp, temp
    )
    new_center = update_center(model_state[CENTER], teacher, self.center_momentum)
    probs = jax.nn.softmax((teacher - model_state[CENTER]) / temp, axis=-1)
    metrics = {
      "teacher_temperature": temp,
      # Entropy of the mean teacher distribution: log(K) is uniform, 0 is collapse.
      "teacher_batch_entropy": -jnp.sum(probs.mean(0) * jnp.log(probs.mean(0) + 1e-12)),
    }
    loss, metrics = self.with_probe(loss, metrics, params, h_global[: len(batch["image"])], batch)
    return loss, (metrics, {**model_state, CENTER: new_center})

  def freeze_last_layer(self, params, step: jax.Array):
    """The head's prototypes (and gain) get no gradient for the first
    `freeze_last_layer_steps` steps (the paper's first epoch), which stabilises early training."""
    if not self.freeze_last_layer_steps:
      return params
    frozen = step < self.freeze_last_layer_steps
    head = dict(params["head"])
    for name in ("prototypes", "gain"):
      if name in head:
        head[name] = jnp.where(frozen, jax.lax.stop_gradient(head[name]), head[name])
    return {**params, "head": head}
