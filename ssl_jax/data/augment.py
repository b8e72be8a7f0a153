"""Image augmentations that run on device inside the jitted step, keyed by the step's RNG.

Every op maps (key, image [H, W, C] in [0, 1]) -> image of the same shape; `augment_batch`
vmaps the composed pipeline over the batch with one key per example, so the result depends
only on the key, never on how the batch is sharded.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Options of the view pipeline (`config.augment`); an op is off when its strength is 0.

  Attributes:
    crop_scale: range of the crop's area as a fraction of the image (random resized crop).
    crop_ratio: range of the crop's aspect ratio (sampled log-uniformly).
    flip_prob: probability of a horizontal flip (0 for digits and text-like images).
    brightness: additive brightness shift drawn from [-brightness, brightness].
    contrast: contrast factor drawn from [1 - contrast, 1 + contrast].
    jitter_prob: probability of applying the brightness/contrast jitter.
    blur_prob: probability of a Gaussian blur.
    blur_sigma: range of the blur's standard deviation in pixels.
    noise_std: standard deviation of additive Gaussian pixel noise.
  """

  crop_scale: Sequence[float] = (0.08, 1.0)
  crop_ratio: Sequence[float] = (3 / 4, 4 / 3)
  flip_prob: float = 0.5
  brightness: float = 0.4
  contrast: float = 0.4
  jitter_prob: float = 0.8
  blur_prob: float = 0.0
  blur_sigma: Sequence[float] = (0.1, 2.0)
  noise_std: float = 0.0


def random_resized_crop(key: jax.Array, image: jnp.ndarray, scale: Sequence[float],
                        ratio: Sequence[float]) -> jnp.ndarray:
  """Crops a random box of the given area/aspect range and resizes it back to the image size."""
  height, width = image.shape[0], image.shape[1]
  area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, (), minval=scale[0], maxval=scale[1]) * height * width
  log_ratio = jax.random.uniform(ratio_key, (), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  crop_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
  crop_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
  y0 = jax.random.uniform(y_key, ()) * (height - crop_h)
  x0 = jax.random.uniform(x_key, ()) * (width - crop_w)
  scale_yx = jnp.stack([height / crop_h, width / crop_w])
  # Output coordinate = input coordinate * scale + translation, so the box corner maps to 0.
  translation = -jnp.stack([y0, x0]) * scale_yx
  return jax.image.scale_and_translate(image, image.shape, (0, 1), scale_yx, translation,
                                       method="linear", antialias=True)


def gaussian_blur(image: jnp.ndarray, sigma: jnp.ndarray) -> jnp.ndarray:
  """Separable Gaussian blur with a traced sigma (kernel radius fixed by the image size)."""
  radius = max(1, min(image.shape[0], image.shape[1]) // 4)
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * (offsets / jnp.maximum(sigma, 1e-3)) ** 2)
  kernel = kernel / kernel.sum()
  padded = jnp.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
  blurred = sum(kernel[i] * padded[i:i + image.shape[0]] for i in range(2 * radius + 1))
  padded = jnp.pad(blurred, ((0, 0), (radius, radius), (0, 0)), mode="edge")
  return sum(kernel[i] * padded[:, i:i + image.shape[1]] for i in range(2 * radius + 1))


def augment_image(key: jax.Array, image: jnp.ndarray, cfg: AugmentConfig) -> jnp.ndarray:
  """One random view of one image."""
  keys = jax.random.split(key, 8)
  image = random_resized_crop(keys[0], image, cfg.crop_scale, cfg.crop_ratio)
  if cfg.flip_prob > 0:
    flip = jax.random.bernoulli(keys[1], cfg.flip_prob)
    image = jnp.where(flip, image[:, ::-1], image)
  if cfg.brightness > 0 or cfg.contrast > 0:
    jitter = jax.random.bernoulli(keys[2], cfg.jitter_prob)
    delta = jax.random.uniform(keys[3], (), minval=-cfg.brightness, maxval=cfg.brightness)
    factor = jax.random.uniform(keys[4], (), minval=1 - cfg.contrast, maxval=1 + cfg.contrast)
    mean = image.mean()
    jittered = (image - mean) * factor + mean + delta
    image = jnp.where(jitter, jittered, image)
  if cfg.blur_prob > 0:
    sigma = jax.random.uniform(keys[5], (), minval=cfg.blur_sigma[0], maxval=cfg.blur_sigma[1])
    blur = jax.random.bernoulli(keys[6], cfg.blur_prob)
    image = jnp.where(blur, gaussian_blur(image, sigma), image)
  if cfg.noise_std > 0:
    image = image + cfg.noise_std * jax.random.normal(keys[7], image.shape)
  return jnp.clip(image, 0.0, 1.0)


def augment_batch(key: jax.Array, images: jnp.ndarray, cfg: AugmentConfig) -> jnp.ndarray:
  """Independent random views of a batch [B, H, W, C]."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: augment_image(k, x, cfg))(keys, images)
