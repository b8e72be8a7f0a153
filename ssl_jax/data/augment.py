"""Image augmentations that run on device inside the jitted step, keyed by the step's RNG.

Every op maps (key, image [H, W, C] in [0, 1]) -> image of the same shape; `augment_batch`
vmaps the composed pipeline over the batch with one key per example, so the result depends
only on the key, never on how the batch is sharded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssl_jax.errors import ConfigError
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
    hue: hue shift drawn from [-hue, hue] turns of the HSV hue circle (torchvision's
      adjust_hue; RGB only).
    jitter_prob: probability of applying the colour jitter.
    jitter_order: "fixed" (contrast, brightness, saturation, hue) or "random" (a fresh
      permutation of the four per image, clipping to [0, 1] after each, as torchvision's
      ColorJitter and SimCLR's TensorFlow code do).
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
  jitter_order: str = "fixed"
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


def random_resized_crop(
  key: jax.Array, image: jnp.ndarray, scale: Sequence[float], ratio: Sequence[float], size: int = 0
) -> jnp.ndarray:
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
  return jax.image.scale_and_translate(
    image,
    (out_h, out_w, image.shape[2]),
    (0, 1),
    scale_yx,
    translation,
    method="linear",
    antialias=True,
  )


# A numpy constant: a jnp one at import would start the backend before jax.distributed.initialize.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def grayscale(image: jnp.ndarray) -> jnp.ndarray:
  """Luma replicated over the channels (a no-op for one-channel images)."""
  if image.shape[-1] != 3:
    return image
  return jnp.broadcast_to((image @ _LUMA)[..., None], image.shape)


def adjust_saturation(image: jnp.ndarray, factor: jnp.ndarray) -> jnp.ndarray:
  """Blends with the grayscale image: 0 = gray, 1 = unchanged, >1 = more saturated."""
  gray = grayscale(image)
  return gray + factor * (image - gray)


def rgb_to_hsv(image: jnp.ndarray) -> jnp.ndarray:
  """[..., 3] RGB in [0, 1] -> HSV, hue in [0, 1) turns (Python's colorsys, vectorised)."""
  r, g, b = image[..., 0], image[..., 1], image[..., 2]
  value = jnp.max(image, -1)
  chroma = value - jnp.min(image, -1)
  safe = jnp.where(chroma > 0, chroma, 1.0)
  saturation = jnp.where(value > 0, chroma / jnp.where(value > 0, value, 1.0), 0.0)
  hue = jnp.where(
    value == r, (g - b) / safe, jnp.where(value == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe)
  )
  hue = jnp.where(chroma > 0, (hue / 6.0) % 1.0, 0.0)
  return jnp.stack([hue, saturation, value], -1)


def hsv_to_rgb(image: jnp.ndarray) -> jnp.ndarray:
  """Inverse of `rgb_to_hsv`."""
  hue, saturation, value = image[..., 0], image[..., 1], image[..., 2]
  sector = jnp.floor(hue * 6.0)
  fraction = hue * 6.0 - sector
  p = value * (1.0 - saturation)
  q = value * (1.0 - saturation * fraction)
  t = value * (1.0 - saturation * (1.0 - fraction))
  sector = sector.astype(jnp.int32) % 6
  choices = [
    (value, t, p),
    (q, value, p),
    (p, value, t),
    (p, q, value),
    (t, p, value),
    (value, p, q),
  ]
  channels = [
    jnp.select([sector == i for i in range(6)], [c[k] for c in choices]) for k in range(3)
  ]
  return jnp.stack(channels, -1)


def adjust_hue(image: jnp.ndarray, turns: jnp.ndarray) -> jnp.ndarray:
  """Shifts the HSV hue by `turns` of the circle (0.5 = opposite colours), like torchvision."""
  if image.shape[-1] != 3:
    return image
  hsv = rgb_to_hsv(image)
  hsv = hsv.at[..., 0].set((hsv[..., 0] + turns) % 1.0)
  return hsv_to_rgb(hsv)


def solarize(image: jnp.ndarray, threshold: float = 0.5) -> jnp.ndarray:
  return jnp.where(image >= threshold, 1.0 - image, image)


def gaussian_blur(image: jnp.ndarray, sigma: jnp.ndarray) -> jnp.ndarray:
  """Separable Gaussian blur with a traced sigma (kernel radius fixed by the image size)."""
  radius = max(1, min(image.shape[0], image.shape[1]) // 4)
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  kernel = jnp.exp(-0.5 * (offsets / jnp.maximum(sigma, 1e-3)) ** 2)
  kernel = kernel / kernel.sum()
  padded = jnp.pad(image, ((radius, radius), (0, 0), (0, 0)), mode="edge")
  blurred = sum(kernel[i] * padded[i : i + image.shape[0]] for i in range(2 * radius + 1))
  padded = jnp.pad(blurred, ((0, 0), (radius, radius), (0, 0)), mode="edge")
  return sum(kernel[i] * padded[:, i : i + image.shape[1]] for i in range(2 * radius + 1))


JITTER_ORDERS = ("fixed", "random")


def color_jitter(
  key: jax.Array, keys: Sequence[jax.Array], image: jnp.ndarray, cfg: AugmentConfig
) -> jnp.ndarray:
  """Brightness, contrast, saturation and hue with strengths drawn from `cfg`'s ranges."""
  if cfg.jitter_order not in JITTER_ORDERS:
    raise ConfigError(f"Unknown jitter_order {cfg.jitter_order!r}; valid: {JITTER_ORDERS}.")
  delta = jax.random.uniform(keys[3], (), minval=-cfg.brightness, maxval=cfg.brightness)
  factor = jax.random.uniform(keys[4], (), minval=1 - cfg.contrast, maxval=1 + cfg.contrast)
  saturation = jax.random.uniform(keys[8], (), minval=1 - cfg.saturation, maxval=1 + cfg.saturation)
  turns = jax.random.uniform(keys[9], (), minval=-cfg.hue, maxval=cfg.hue)
  if cfg.jitter_order == "fixed":
    mean = image.mean()
    jittered = (image - mean) * factor + mean + delta
    if cfg.saturation > 0:
      jittered = adjust_saturation(jnp.clip(jittered, 0.0, 1.0), saturation)
    if cfg.hue > 0:
      jittered = adjust_hue(jnp.clip(jittered, 0.0, 1.0), turns)
    return jittered
  ops = [
    lambda x: x + delta,
    lambda x: (x - x.mean()) * factor + x.mean(),
    lambda x: adjust_saturation(x, saturation),
    lambda x: adjust_hue(x, turns),
  ]
  order = jax.random.permutation(jax.random.fold_in(key, 2), len(ops))
  for position in range(len(ops)):
    image = jnp.clip(jax.lax.switch(order[position], ops, image), 0.0, 1.0)
  return image


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
    image = jnp.where(jitter, color_jitter(key, keys, image, cfg), image)
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


def multi_crop(
  key: jax.Array, images: jnp.ndarray, views: Mapping[str, AugmentConfig], num_local: int
) -> tuple[jnp.ndarray, jnp.ndarray | None]:
  """Two global views [2B, H, W, C] (view1 then view2) and `num_local` local views
  [num_local*B, h, w, C] (None when num_local is 0), as in SwAV and DINO."""
  keys = jax.random.split(key, 2 + num_local)
  global_views = jnp.concatenate(
    [augment_batch(keys[0], images, views["view1"]), augment_batch(keys[1], images, views["view2"])]
  )
  if not num_local:
    return global_views, None
  local_views = jnp.concatenate([augment_batch(k, images, views["local"]) for k in keys[2:]])
  return global_views, local_views
