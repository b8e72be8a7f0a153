"""Image augmentations that run on device inside the jitted step, keyed by the step's RNG.

Every op maps (key, image [H, W, C] in [0, 1]) -> image of the same shape; `augment_batch`
vmaps the composed pipeline over the batch with one key per example, so the result depends
only on the key, never on how the batch is sharded.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from ssl_jax.registry import check_options


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Options of the view pipeline (`config.augment`); an op is off when its strength is 0.

  Attributes:
    crop_scale: range of the crop's area as a fraction of the image (random resized crop).
    crop_ratio: range of the crop's aspect ratio (sampled log-uniformly).
    flip_prob: probability of a horizontal flip (0 for digits and text-like images).
    brightness: additive brightness shift drawn from [-brightness, brightness] (the SimCLR
      TensorFlow recipe; torchvision multiplies instead).
    contrast: contrast factor drawn from [1 - contrast, 1 + contrast].
    saturation: saturation factor drawn from [1 - saturation, 1 + saturation] (RGB only).
    hue: hue rotation drawn from [-hue, hue] turns (a rotation in YIQ space; RGB only).
    jitter_prob: probability of applying the colour jitter (brightness ... hue, in that order).
    grayscale_prob: probability of replacing the image by its luma (RGB only).
    blur_prob: probability of a Gaussian blur.
    blur_sigma: range of the blur's standard deviation in pixels.
    solarize_prob: probability of solarizing (pixels >= 0.5 become 1 - pixel).
    noise_std: standard deviation of additive Gaussian pixel noise.
    size: output side in pixels; 0 keeps the input size (multi-crop's local views set it).
  """

  crop_scale: Sequence[float] = (0.08, 1.0)
  crop_ratio: Sequence[float] = (3 / 4, 4 / 3)
  flip_prob: float = 0.5
  brightness: float = 0.4
  contrast: float = 0.4
  saturation: float = 0.0
  hue: float = 0.0
  jitter_prob: float = 0.8
  grayscale_prob: float = 0.0
  blur_prob: float = 0.0
  blur_sigma: Sequence[float] = (0.1, 2.0)
  solarize_prob: float = 0.0
  noise_std: float = 0.0
  size: int = 0


VIEW_KEYS = ("view1", "view2", "local")


def view_configs(augment: Mapping[str, Any]) -> dict[str, AugmentConfig]:
  """`config.augment` -> {"view1", "view2", "local"} pipelines.

  The top-level keys are shared by every view; the optional sub-dicts `view1`, `view2` and
  `local` override them for one view (BYOL's asymmetric blur/solarize, multi-crop's local
  scale and size). Unknown keys raise a ConfigError naming the valid ones.
  """
  augment = dict(augment)
  fields = AugmentConfig.__dataclass_fields__
  check_options("config.augment", augment, list(fields) + list(VIEW_KEYS))
  shared = {k: v for k, v in augment.items() if k not in VIEW_KEYS}
  views = {}
  for view in VIEW_KEYS:
    own = dict(augment.get(view) or {})
    check_options(f"config.augment.{view}", own, fields)
    views[view] = AugmentConfig(**{**shared, **own})
  return views


def random_resized_crop(key: jax.Array, image: jnp.ndarray, scale: Sequence[float],
                        ratio: Sequence[float], size: int = 0) -> jnp.ndarray:
  """Crops a random box of the given area/aspect range and resizes it to `size` (0: same)."""
  height, width = image.shape[0], image.shape[1]
  area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
  area = jax.random.uniform(area_key, (), minval=scale[0], maxval=scale[1]) * height * width
  log_ratio = jax.random.uniform(ratio_key, (), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  crop_h = jnp.clip(jnp.sqrt(area / aspect), 1.0, height)
  crop_w = jnp.clip(jnp.sqrt(area * aspect), 1.0, width)
  y0 = jax.random.uniform(y_key, ()) * (height - crop_h)
  x0 = jax.random.uniform(x_key, ()) * (width - crop_w)
  out_h, out_w = (size, size) if size else (height, width)
  scale_yx = jnp.stack([out_h / crop_h, out_w / crop_w])
  # Output coordinate = input coordinate * scale + translation, so the box corner maps to 0.
  translation = -jnp.stack([y0, x0]) * scale_yx
  return jax.image.scale_and_translate(image, (out_h, out_w, image.shape[2]), (0, 1), scale_yx,
                                       translation, method="linear", antialias=True)


_LUMA = jnp.array([0.299, 0.587, 0.114])


def grayscale(image: jnp.ndarray) -> jnp.ndarray:
  """Luma replicated over the channels (a no-op for one-channel images)."""
  if image.shape[-1] != 3:
    return image
  return jnp.broadcast_to((image @ _LUMA)[..., None], image.shape)


def adjust_saturation(image: jnp.ndarray, factor: jnp.ndarray) -> jnp.ndarray:
  """Blends with the grayscale image: 0 = gray, 1 = unchanged, >1 = more saturated."""
  gray = grayscale(image)
  return gray + factor * (image - gray)


# RGB <-> YIQ; a hue shift is a rotation of the (I, Q) chroma plane.
_RGB_TO_YIQ = jnp.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                         [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = jnp.linalg.inv(_RGB_TO_YIQ)


def adjust_hue(image: jnp.ndarray, turns: jnp.ndarray) -> jnp.ndarray:
  """Rotates the hue by `turns` of a full circle (0.5 = opposite colours)."""
  if image.shape[-1] != 3:
    return image
  angle = 2 * jnp.pi * turns
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rotation = jnp.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
  return image @ (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).T


def solarize(image: jnp.ndarray, threshold: float = 0.5) -> jnp.ndarray:
  return jnp.where(image >= threshold, 1.0 - image, image)


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
  # The ops added later draw from a separate stream so the original ops' draws stay unchanged.
  keys = [*keys, *jax.random.split(jax.random.fold_in(key, 1), 4)]
  image = random_resized_crop(keys[0], image, cfg.crop_scale, cfg.crop_ratio, cfg.size)
  if cfg.flip_prob > 0:
    flip = jax.random.bernoulli(keys[1], cfg.flip_prob)
    image = jnp.where(flip, image[:, ::-1], image)
  if cfg.brightness > 0 or cfg.contrast > 0 or cfg.saturation > 0 or cfg.hue > 0:
    jitter = jax.random.bernoulli(keys[2], cfg.jitter_prob)
    delta = jax.random.uniform(keys[3], (), minval=-cfg.brightness, maxval=cfg.brightness)
    factor = jax.random.uniform(keys[4], (), minval=1 - cfg.contrast, maxval=1 + cfg.contrast)
    mean = image.mean()
    jittered = (image - mean) * factor + mean + delta
    if cfg.saturation > 0:
      saturation = jax.random.uniform(keys[8], (), minval=1 - cfg.saturation,
                                      maxval=1 + cfg.saturation)
      jittered = adjust_saturation(jnp.clip(jittered, 0.0, 1.0), saturation)
    if cfg.hue > 0:
      turns = jax.random.uniform(keys[9], (), minval=-cfg.hue, maxval=cfg.hue)
      jittered = adjust_hue(jnp.clip(jittered, 0.0, 1.0), turns)
    image = jnp.where(jitter, jittered, image)
  if cfg.grayscale_prob > 0:
    image = jnp.where(jax.random.bernoulli(keys[10], cfg.grayscale_prob), grayscale(image), image)
  if cfg.blur_prob > 0:
    sigma = jax.random.uniform(keys[5], (), minval=cfg.blur_sigma[0], maxval=cfg.blur_sigma[1])
    blur = jax.random.bernoulli(keys[6], cfg.blur_prob)
    image = jnp.where(blur, gaussian_blur(image, sigma), image)
  if cfg.solarize_prob > 0:
    image = jnp.where(jax.random.bernoulli(keys[11], cfg.solarize_prob), solarize(image), image)
  if cfg.noise_std > 0:
    image = image + cfg.noise_std * jax.random.normal(keys[7], image.shape)
  return jnp.clip(image, 0.0, 1.0)


def augment_batch(key: jax.Array, images: jnp.ndarray, cfg: AugmentConfig) -> jnp.ndarray:
  """Independent random views of a batch [B, H, W, C]."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: augment_image(k, x, cfg))(keys, images)


def multi_crop(key: jax.Array, images: jnp.ndarray, views: Mapping[str, AugmentConfig],
               num_local: int) -> tuple[jnp.ndarray, jnp.ndarray | None]:
  """Two global views [2B, H, W, C] (view1 then view2) and `num_local` local views
  [num_local*B, h, w, C] (None when num_local is 0), as in SwAV and DINO."""
  keys = jax.random.split(key, 2 + num_local)
  global_views = jnp.concatenate([augment_batch(keys[0], images, views["view1"]),
                                  augment_batch(keys[1], images, views["view2"])])
  if not num_local:
    return global_views, None
  local_views = jnp.concatenate([augment_batch(k, images, views["local"]) for k in keys[2:]])
  return global_views, local_views
