"""Decoding encoded images (JPEG, PNG, ...) to fixed-size uint8 arrays on the host, with PIL.

The host only decodes and brings every image to one static shape; the random resized crop and
the other augmentations run on device. Variable-size images are resized so the shorter side is
`size` and then centre-cropped to `size` x `size` (the usual evaluation transform; training
crops are then taken from that square on device).
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from ssl_jax.errors import DataError

ImageSource = bytes | str | os.PathLike
CHANNEL_MODES = {1: "L", 3: "RGB"}


class CorruptImageError(DataError):
  """An image file or record could not be decoded; the message names it."""


def decode_image(
  source: ImageSource, size: int | None, channels: int = 3, name: str | None = None
) -> np.ndarray:
  """Decodes `source` (encoded bytes or a path) to uint8 [size, size, channels].

  Args:
    source: the encoded image, or the path of an image file.
    size: output side; None keeps the image's own size (the dataset must then be uniform).
    channels: 3 (RGB) or 1 (grayscale); other modes (palette, CMYK, alpha) are converted.
    name: how to refer to the image in errors (defaults to the path).
  """
  if channels not in CHANNEL_MODES:
    raise ValueError(f"channels={channels} is not supported; valid: {sorted(CHANNEL_MODES)}.")
  name = name or (os.fspath(source) if not isinstance(source, bytes) else "<image bytes>")
  try:
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
      image = image.convert(CHANNEL_MODES[channels])
      if size:
        image = resize_and_center_crop(image, size)
      array = np.asarray(image, np.uint8)
  except (UnidentifiedImageError, OSError, SyntaxError) as error:
    raise CorruptImageError(f"Cannot decode image {name}: {error}") from error
  return array.reshape(array.shape[:2] + (channels,))


def resize_and_center_crop(image: Image.Image, size: int) -> Image.Image:
  """Resizes the shorter side to `size` (bicubic, antialiased), then crops the centre square."""
  width, height = image.size
  scale = size / min(width, height)
  new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
  if (new_w, new_h) != (width, height):
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return image.crop((left, top, left + size, top + size))
