"""MAE (He et al., 2022): a ViT encodes a random 25% of the patches; a light decoder
reconstructs the pixels of the masked ones."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from ssl_jax.data.augment import augment_batch
from ssl_jax.data.source import Dataset
from ssl_jax.models.transformer import EncoderBlock
from ssl_jax.models.vit import ViT, patchify, sincos_position_embedding
from ssl_jax.registry import MODELS, TASKS, ConfigError
from ssl_jax.tasks.vision import VisionTask


def random_masking(
  rng: jax.Array, batch: int, num_patches: int, mask_ratio: float
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Per-example random subsets of a static size: (keep [B, K] patch indices, restore [B, N]
  (the inverse shuffle), mask [B, N] with 1 = masked)."""
  num_keep = max(1, int(round(num_patches * (1 - mask_ratio))))
  noise = jax.random.uniform(rng, (batch, num_patches))
  shuffle = jnp.argsort(noise, axis=1)
  restore = jnp.argsort(shuffle, axis=1)
  keep = shuffle[:, :num_keep]
  mask = jnp.ones((batch, num_patches)).at[:, :num_keep].set(0.0)
  return keep, restore, jnp.take_along_axis(mask, restore, axis=1)


def mae_loss(
  prediction: jnp.ndarray, patches: jnp.ndarray, mask: jnp.ndarray, norm_pix_loss: bool
) -> jnp.ndarray:
  """Mean squared error per patch, averaged over the masked patches only. With
  `norm_pix_loss` each target patch is standardised by its own mean and unbiased variance
  (the MAE reference code's `target.var(dim=-1)`, torch's default ddof=1: with 2x2
  single-channel patches the population variance would scale targets by sqrt(4/3))."""
  target = patches.astype(jnp.float32)
  if norm_pix_loss:
    mean = target.mean(-1, keepdims=True)
    var = target.var(-1, keepdims=True, ddof=1)
    target = (target - mean) / jnp.sqrt(var + 1e-6)
  per_patch = jnp.mean((prediction.astype(jnp.float32) - target) ** 2, axis=-1)
  return jnp.sum(per_patch * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class MAEDecoder(nn.Module):
  """Embeds the encoder's tokens, inserts a shared mask token at the masked positions, adds
  fixed position embeddings and predicts every patch's pixels."""

  width: int = 512
  depth: int = 8
  num_heads: int = 16
  patch_dim: int = 768
  dtype: str = "float32"

  @nn.compact
  def __call__(self, tokens: jnp.ndarray, restore: jnp.ndarray, train: bool = True) -> jnp.ndarray:
    x = nn.Dense(self.width, name="embed")(tokens)
    batch, num_patches = restore.shape
    mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.width))
    fill = jnp.broadcast_to(mask_token, (batch, num_patches + 1 - x.shape[1], self.width))
    patches = jnp.concatenate([x[:, 1:], fill], axis=1)
    patches = jnp.take_along_axis(patches, restore[..., None], axis=1)  # Unshuffle.
    grid = int(round(num_patches**0.5))
    patches = patches + sincos_position_embedding(grid, self.width)[None]
    x = jnp.concatenate([x[:, :1], patches], axis=1)
    for i in range(self.depth):
      x = EncoderBlock(self.num_heads, 4 * self.width, 0.0, self.dtype, name=f"block_{i}")(
        x, None, train
      )
    x = nn.LayerNorm(name="norm")(x)
    return nn.Dense(self.patch_dim, name="predict")(x[:, 1:]).astype(jnp.float32)


@TASKS.register("mae")
class MAE(VisionTask):
  """Options: mask_ratio (0.75), norm_pix_loss (True in the paper's best setting), decoder
  width / depth / heads (512 / 8 / 16 in the paper). The encoder must be a ViT. The view
  pipeline is `config.augment.view1` (the paper: random resized crop (0.2, 1) and flips)."""

  def __init__(
    self,
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    mask_ratio: float = 0.75,
    norm_pix_loss: bool = True,
    decoder_width: int = 512,
    decoder_depth: int = 8,
    decoder_heads: int = 16,
  ):
    super().__init__(config, dataset)
    if not isinstance(self.encoder, ViT):
      vits = [n for n in MODELS.names() if n.startswith("vit")]
      raise ConfigError(
        f"Task 'mae' needs a ViT encoder; config.model={config.model!r}. Valid: {vits}."
      )
    if not 0.0 < mask_ratio < 1.0:
      raise ConfigError(f"mask_ratio={mask_ratio} must be in (0, 1).")
    channels = dataset.split(dataset.train_split)["image"].shape[-1]
    self.patch_size = self.encoder.patch_size
    self.modules["decoder"] = MAEDecoder(
      decoder_width, decoder_depth, decoder_heads, self.patch_size**2 * channels, self.encoder.dtype
    )
    self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss

  def _mask(self, rng, images):
    num_patches = (images.shape[1] // self.patch_size) * (images.shape[2] // self.patch_size)
    return random_masking(rng, images.shape[0], num_patches, self.mask_ratio)

  def init_heads(self, keys, batch, features, params, model_state):
    images = batch["image"]
    keep, restore, _ = self._mask(next(keys), images)
    tokens, _ = self.apply(
      "encoder", params, model_state, images, False, keep=keep, return_tokens=True
    )
    self.init_module("decoder", next(keys), tokens, params, model_state, restore=restore)

  def loss_fn(self, params, model_state, batch, rng, step):
    del step  # no schedule inside this loss
    view_rng, mask_rng = jax.random.split(rng)
    images = augment_batch(view_rng, batch["image"], self.views["view1"])
    keep, restore, mask = self._mask(mask_rng, images)
    tokens, _ = self.apply("encoder", params, model_state, images, keep=keep, return_tokens=True)
    prediction, _ = self.apply("decoder", params, model_state, tokens, restore=restore)
    loss = mae_loss(prediction, patchify(images, self.patch_size), mask, self.norm_pix_loss)
    features = tokens[:, 0] if self.encoder.pool == "cls" else tokens[:, 1:].mean(1)
    loss, metrics = self.with_probe(loss, {"mask_fraction": mask.mean()}, params, features, batch)
    return loss, (metrics, model_state)
