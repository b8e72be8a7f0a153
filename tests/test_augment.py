"""On-device augmentations: each op against its definition, ranges, determinism per key."""

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssl_jax.data import augment
from ssl_jax.data.augment import AugmentConfig, augment_batch, multi_crop, view_configs
from ssl_jax.registry import ConfigError

RNG = np.random.default_rng(0)


def _rgb(n=6, size=5):
  return jnp.asarray(RNG.random((n, size, size, 3)), jnp.float32)


def test_hsv_round_trip_and_hue_shift_match_colorsys():
  pixels = RNG.random((200, 3)).astype(np.float32)
  pixels[:5] = [[0.2, 0.2, 0.2], [0, 0, 0], [1, 1, 1], [1, 0, 0], [0.3, 0.9, 0.9]]  # edge cases
  hsv = np.asarray(augment.rgb_to_hsv(jnp.asarray(pixels)))
  expected = np.array([colorsys.rgb_to_hsv(*p) for p in pixels])
  np.testing.assert_allclose(hsv, expected, atol=1e-5)
  np.testing.assert_allclose(augment.hsv_to_rgb(jnp.asarray(hsv)), pixels, atol=1e-5)
  shifted = np.asarray(augment.adjust_hue(jnp.asarray(pixels), 0.3))
  reference = np.array([colorsys.hsv_to_rgb((h + 0.3) % 1.0, s, v) for h, s, v in expected])
  np.testing.assert_allclose(shifted, reference, atol=1e-5)


def test_saturation_grayscale_and_solarize_follow_their_definitions():
  image = _rgb(1)[0]
  luma = np.asarray(image) @ np.array([0.299, 0.587, 0.114])
  np.testing.assert_allclose(augment.grayscale(image), np.repeat(luma[..., None], 3, -1), rtol=1e-6)
  np.testing.assert_allclose(augment.adjust_saturation(image, 0.0), augment.grayscale(image))
  np.testing.assert_allclose(augment.adjust_saturation(image, 1.0), image, atol=1e-6)
  np.testing.assert_allclose(
    augment.solarize(image), np.where(image >= 0.5, 1 - np.asarray(image), image)
  )


def test_brightness_shift_stays_in_its_range():
  """A mid-gray image under brightness only: every view is the image plus delta, |delta| <= b."""
  images = jnp.full((256, 4, 4, 1), 0.5)
  cfg = AugmentConfig(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_prob=0.0,
    brightness=0.2,
    contrast=0.0,
    jitter_prob=1.0,
  )
  views = np.asarray(augment_batch(jax.random.key(0), images, cfg))
  deltas = views[:, 0, 0, 0] - 0.5
  np.testing.assert_allclose(
    views, np.broadcast_to(0.5 + deltas[:, None, None, None], views.shape), atol=1e-5
  )
  assert np.abs(deltas).max() <= 0.2 + 1e-6 and deltas.std() > 0.08  # fills the range


@pytest.mark.parametrize("order", ["fixed", "random"])
def test_color_jitter_is_deterministic_per_key_and_in_range(order):
  cfg = AugmentConfig(
    brightness=0.4,
    contrast=0.4,
    saturation=0.4,
    hue=0.1,
    jitter_prob=1.0,
    grayscale_prob=0.2,
    solarize_prob=0.2,
    blur_prob=0.5,
    jitter_order=order,
  )
  images = _rgb(16, 8)
  first = augment_batch(jax.random.key(3), images, cfg)
  np.testing.assert_array_equal(first, augment_batch(jax.random.key(3), images, cfg))
  assert not np.array_equal(first, augment_batch(jax.random.key(4), images, cfg))
  assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0


def test_random_jitter_order_applies_one_permutation_of_the_four_ops():
  """With every strength drawn, the random-order output equals applying the four ops, clipped,
  in one of the 24 orders; over many images more than one order occurs."""
  import itertools

  cfg = AugmentConfig(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    flip_prob=0.0,
    brightness=0.3,
    contrast=0.5,
    saturation=0.5,
    hue=0.2,
    jitter_prob=1.0,
    jitter_order="random",
  )
  image = _rgb(1, 4)[0]
  found = set()
  for seed in range(12):
    key = jax.random.key(seed)
    out = np.asarray(augment.augment_image(key, image, cfg))
    keys = jax.random.split(key, 8)
    keys = [*keys, *jax.random.split(jax.random.fold_in(key, 1), 4)]
    draw = lambda k, s, lo=None: float(
      jax.random.uniform(
        keys[k], (), minval=-s if lo is None else lo, maxval=s if lo is None else 2 - lo
      )
    )
    delta, factor = draw(3, 0.3), draw(4, None, 0.5)
    saturation, turns = draw(8, None, 0.5), draw(9, 0.2)
    ops = [
      lambda x: x + delta,
      lambda x: (x - x.mean()) * factor + x.mean(),
      lambda x: augment.adjust_saturation(x, saturation),
      lambda x: augment.adjust_hue(x, turns),
    ]
    matches = []
    for order in itertools.permutations(range(4)):
      x = image
      for i in order:
        x = jnp.clip(ops[i](x), 0.0, 1.0)
      if np.allclose(x, out, atol=1e-5):
        matches.append(order)
    assert matches, seed
    found.add(matches[0])
  assert len(found) > 1


def test_view_configs_override_per_view_and_reject_unknown_keys():
  views = view_configs(
    {
      "blur_prob": 1.0,
      "view2": {"blur_prob": 0.1, "solarize_prob": 0.2},
      "local": {"size": 4, "crop_scale": (0.05, 0.4)},
    }
  )
  assert views["view1"].blur_prob == 1.0 and views["view1"].solarize_prob == 0.0
  assert views["view2"].blur_prob == 0.1 and views["view2"].solarize_prob == 0.2
  assert views["local"].size == 4 and views["local"].blur_prob == 1.0
  with pytest.raises(ConfigError, match="solarise"):
    view_configs({"view1": {"solarise_prob": 0.2}})


def test_multi_crop_shapes_and_global_views_match_their_pipelines():
  views = view_configs({"local": {"size": 4, "crop_scale": (0.05, 0.4)}})
  images = _rgb(3, 8)
  global_views, local_views = multi_crop(jax.random.key(0), images, views, num_local=2)
  assert global_views.shape == (6, 8, 8, 3) and local_views.shape == (6, 4, 4, 3)
  keys = jax.random.split(jax.random.key(0), 4)
  np.testing.assert_array_equal(global_views[:3], augment_batch(keys[0], images, views["view1"]))
