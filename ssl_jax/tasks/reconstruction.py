"""Two classic pretext tasks on one image: rotation prediction (Gidaris et al., 2018) and a
denoising / masked-reconstruction autoencoder (Vincent et al., 2008; Pathak et al., 2016)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ssl_jax.data.augment import augment_batch
from ssl_jax.data.source import Dataset
from ssl_jax.models.heads import LinearClassifier, MLPHead
from ssl_jax.registry import TASKS, ConfigError
from ssl_jax.tasks.vision import VisionTask


def rotations(images: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """All four rotations by 0/90/180/270 degrees: ([4B, H, W, C], labels [4B] in 0..3)."""
  if images.shape[1] != images.shape[2]:
    raise ConfigError(f"rotation needs square images, got {images.shape[1:3]}.")
  rotated = jnp.concatenate([jnp.rot90(images, k, axes=(1, 2)) for k in range(4)])
  labels = jnp.repeat(jnp.arange(4), images.shape[0])
  return rotated, labels


@TASKS.register("rotation")
class Rotation(VisionTask):
  """Predicts which of the four rotations was applied, from the encoder's features."""

  head_chain = ("rotation_head",)

  def __init__(self, config: ml_collections.ConfigDict, dataset: Dataset):
    super().__init__(config, dataset)
    self.modules["rotation_head"] = LinearClassifier(4)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    images = augment_batch(rng, batch["image"], self.views["view1"])
    rotated, labels = rotations(images)
    (h, logits), model_state = self.forward(
      ("encoder", "rotation_head"), params, model_state, rotated
    )
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    metrics = {"rotation_accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}
    loss, metrics = self.with_probe(loss, metrics, params, h[: len(images)], batch)
    return loss, (metrics, model_state)


def corrupt(
  rng: jax.Array, images: jnp.ndarray, noise_std: float, mask_ratio: float, patch_size: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Gaussian noise plus zeroed square patches: (corrupted images, pixel mask [B, H, W, 1]
  with 1 where a patch was erased)."""
  b, h, w, _ = images.shape
  noise_rng, mask_rng = jax.random.split(rng)
  grid = (h // patch_size, w // patch_size)
  erased = jax.random.bernoulli(mask_rng, mask_ratio, (b, *grid, 1)).astype(images.dtype)
  erased = jnp.repeat(jnp.repeat(erased, patch_size, 1), patch_size, 2)
  erased = jnp.pad(erased, ((0, 0), (0, h - erased.shape[1]), (0, w - erased.shape[2]), (0, 0)))
  noisy = images + noise_std * jax.random.normal(noise_rng, images.shape)
  return noisy * (1 - erased), erased


def reconstruction_loss(
  prediction: jnp.ndarray, images: jnp.ndarray, erased: jnp.ndarray, masked_only: bool
) -> jnp.ndarray:
  """Mean squared error over all pixels, or over the erased pixels only."""
  squared = jnp.mean((prediction - images) ** 2, axis=-1, keepdims=True)
  if not masked_only:
    return jnp.mean(squared)
  return jnp.sum(squared * erased) / jnp.maximum(jnp.sum(erased), 1.0)


@TASKS.register("denoising")
class DenoisingAutoencoder(VisionTask):
  """Encodes a corrupted view (noise + erased patches) and decodes the clean view from the
  pooled features with an MLP (sized for small images: it predicts H*W*C values).

  Options: noise_std, mask_ratio, patch_size (side of the erased squares), masked_only (loss
  on erased pixels only), decoder_hidden_dim.
  """

  head_chain = ("decoder",)

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    noise_std: float = 0.1,
    mask_ratio: float = 0.25,
    patch_size: int = 2,
    masked_only: bool = False,
    decoder_hidden_dim: int = 512,
  ):
    super().__init__(config, dataset)
    shape = dataset.split(dataset.train_split)["image"].shape[1:]
    if shape[0] * shape[1] * shape[2] > 64 * 64 * 3:
      raise ConfigError(
        f"Task 'denoising' decodes pixels with an MLP and supports images up to "
        f"64x64x3; got {shape}. Use 'mae' for larger images."
      )
    self.image_shape = shape
    self.modules["decoder"] = MLPHead(decoder_hidden_dim, shape[0] * shape[1] * shape[2], 2)
    self.options = (noise_std, mask_ratio, patch_size)
    self.masked_only = masked_only

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    view_rng, corrupt_rng = jax.random.split(rng)
    images = augment_batch(view_rng, batch["image"], self.views["view1"])
    corrupted, erased = corrupt(corrupt_rng, images, *self.options)
    (h, flat), model_state = self.forward(("encoder", "decoder"), params, model_state, corrupted)
    prediction = jax.nn.sigmoid(flat).reshape(images.shape)
    loss = reconstruction_loss(prediction, images, erased, self.masked_only)
    loss, metrics = self.with_probe(loss, {"erased_fraction": erased.mean()}, params, h, batch)
    return loss, (metrics, model_state)
