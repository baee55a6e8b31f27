"""Camera frames -> numpy RGB uint8 (H, W, 3), without ROS.

The perception node hands over the fields of a ``sensor_msgs/Image`` (height, width, encoding,
step, data, is_bigendian), so this module imports no rclpy and is tested on plain bytes.

Why our own decoder and not only cv_bridge: cv_bridge is not on PyPI (there is no apt ROS here),
and for the five encodings cameras and simulators actually send (rgb8, bgr8, rgba8, bgra8,
mono8) a numpy view + channel shuffle is exact and cheap. cv_bridge, when importable, is used
only to widen coverage to the other *colour* encodings it knows (bayer_*, yuv422, rgb16...).
Depth and other non-colour encodings (16UC1, 32FC1, ...) are always refused: a depth map fed to
an RGB backbone gives meaningless tokens, which is worse than no prefix.

Row padding is respected: ``step`` is the byte length of one row and may exceed
``width * channels``; the padding bytes are dropped.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["ImageEncodingError", "SUPPORTED_ENCODINGS", "fields_to_rgb", "image_msg_to_rgb"]

# encoding -> (channels, index of R, G, B in the pixel, in that order)
_LAYOUT: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUT)

# OpenCV-style matrix encodings ("16UC1", "32FC1", "8UC3"...): no colour meaning, never decoded.
_MATRIX_ENCODING = re.compile(r"^\d+(U|S|F)C\d+$", re.IGNORECASE)
_NON_COLOUR = {"mono16", "16uc1", "32fc1", "64fc1"}


class ImageEncodingError(ValueError):
    """A frame cannot be turned into an RGB uint8 image; the message says why, with numbers."""


def _as_uint8(data: Any) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)  # bytes, bytearray, memoryview, array('B')
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)  # a plain list of ints


def fields_to_rgb(height: int, width: int, encoding: str, step: int, data: Any,
                  is_bigendian: bool | int = False) -> np.ndarray:
    """Decode one frame given as ``sensor_msgs/Image`` fields; returns a new (H, W, 3) uint8 array.

    Raises ImageEncodingError for an unsupported encoding, a non-positive size, a ``step`` shorter
    than a row, or ``data`` whose length is not ``step * height``.
    """
    del is_bigendian  # 8-bit encodings only: byte order does not matter
    enc = (encoding or "").strip()
    if enc.lower() not in _LAYOUT:
        raise ImageEncodingError(
            f"unsupported image encoding {encoding!r}: expected one of {', '.join(SUPPORTED_ENCODINGS)}"
            + (" (depth/matrix encodings carry no colour)" if _is_non_colour(enc) else ""))
    channels, rgb_index = _LAYOUT[enc.lower()]
    if height <= 0 or width <= 0:
        raise ImageEncodingError(f"image has no pixels: height={height}, width={width}")
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageEncodingError(
            f"step {step} is shorter than one row of {width} px x {channels} B = {row_bytes} B ({enc})")
    buf = _as_uint8(data)
    if buf.size != step * height:
        raise ImageEncodingError(
            f"image data has {buf.size} bytes, expected step {step} x height {height} = {step * height} "
            f"({width}x{height} {enc})")
    pixels = buf.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)  # a new array
    return np.ascontiguousarray(pixels[:, :, list(rgb_index)])  # fancy indexing copies


def _is_non_colour(encoding: str) -> bool:
    return bool(_MATRIX_ENCODING.match(encoding)) or encoding.lower() in _NON_COLOUR


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` (any object with its fields) to (H, W, 3) uint8 RGB.

    The five common encodings go through :func:`fields_to_rgb`; other colour encodings through
    cv_bridge when it is importable; everything else raises ImageEncodingError.
    """
    encoding = str(msg.encoding)
    if encoding.lower() in _LAYOUT or _is_non_colour(encoding):
        return fields_to_rgb(int(msg.height), int(msg.width), encoding, int(msg.step), msg.data,
                             bool(msg.is_bigendian))
    try:
        from cv_bridge import CvBridge  # type: ignore[import-not-found]
    except ImportError:
        return fields_to_rgb(int(msg.height), int(msg.width), encoding, int(msg.step), msg.data,
                             bool(msg.is_bigendian))  # raises the "unsupported encoding" error
    try:
        rgb = CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except Exception as err:  # cv_bridge raises CvBridgeError or cv2.error, both opaque
        raise ImageEncodingError(f"cv_bridge cannot convert {encoding!r} to rgb8: {err}") from err
    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageEncodingError(f"cv_bridge returned shape {rgb.shape} for {encoding!r}, expected (H, W, 3)")
    return np.ascontiguousarray(rgb)
