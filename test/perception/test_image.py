"""sensor_msgs/Image fields -> RGB uint8: every supported encoding, row padding, and refusals."""

from __future__ import annotations

import array
import types

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arvla_perception.image import (SUPPORTED_ENCODINGS, ImageEncodingError, fields_to_rgb,
                                    image_msg_to_rgb)


def _encode(rgb: np.ndarray, encoding: str, pad: int = 0) -> tuple[int, bytes]:
    """The inverse of the decoder, written independently: RGB -> (step, data) for ``encoding``."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    alpha = np.full_like(r, 77)
    pixels = {
        "rgb8": np.stack([r, g, b], -1), "bgr8": np.stack([b, g, r], -1),
        "rgba8": np.stack([r, g, b, alpha], -1), "bgra8": np.stack([b, g, r, alpha], -1),
        "mono8": r[..., None],
    }[encoding]
    h, w, c = pixels.shape
    rows = np.full((h, w * c + pad), 0xAB, np.uint8)  # padding bytes that must be ignored
    rows[:, : w * c] = pixels.reshape(h, w * c)
    return w * c + pad, rows.tobytes()


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), pad=st.integers(0, 5),
       encoding=st.sampled_from(SUPPORTED_ENCODINGS), seed=st.integers(0, 2**32 - 1))
def test_round_trip_every_encoding_with_row_padding(h, w, pad, encoding, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    if encoding == "mono8":
        rgb[..., 1] = rgb[..., 2] = rgb[..., 0]
    step, data = _encode(rgb, encoding, pad)
    out = fields_to_rgb(h, w, encoding, step, data, False)
    assert out.dtype == np.uint8 and out.shape == (h, w, 3)
    np.testing.assert_array_equal(out, rgb)


def test_known_pixel_values_and_data_containers():
    # one 2x1 bgra8 image with a padding byte per row: pixel (R,G,B) = (10,20,30) and (40,50,60)
    data = bytes([30, 20, 10, 255, 60, 50, 40, 255, 0])
    for container in (data, bytearray(data), array.array("B", data), list(data), memoryview(data)):
        out = fields_to_rgb(1, 2, "bgra8", 9, container)
        assert out.tolist() == [[[10, 20, 30], [40, 50, 60]]]


def test_output_does_not_alias_the_message_buffer():
    buf = bytearray([1, 2, 3])
    out = fields_to_rgb(1, 1, "rgb8", 3, buf)
    buf[0] = 99
    assert out[0, 0, 0] == 1


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1", "mono16", "yuv422", "bayer_rggb8", "", "RGB 8"])
def test_unsupported_encodings_are_refused_by_name(encoding):
    with pytest.raises(ImageEncodingError, match="unsupported image encoding"):
        fields_to_rgb(2, 2, encoding, 4, bytes(8))


def test_depth_encoding_error_says_why():
    with pytest.raises(ImageEncodingError, match="16UC1.*depth"):
        fields_to_rgb(2, 2, "16UC1", 4, bytes(8))


@pytest.mark.parametrize("h,w,step,n,match", [
    (0, 4, 12, 0, "no pixels: height=0, width=4"),
    (4, 0, 0, 0, "no pixels"),
    (2, 4, 12, 0, "has 0 bytes, expected step 12 x height 2 = 24"),   # empty data
    (2, 4, 12, 23, "has 23 bytes, expected .* = 24"),                  # one byte short
    (2, 4, 12, 25, "has 25 bytes"),                                    # one byte too many
    (2, 4, 11, 22, "step 11 is shorter than one row of 4 px x 3 B = 12 B"),
])
def test_wrong_sizes_are_refused_with_numbers(h, w, step, n, match):
    with pytest.raises(ImageEncodingError, match=match):
        fields_to_rgb(h, w, "rgb8", step, bytes(n))


def test_image_msg_to_rgb_reads_message_fields():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    step, data = _encode(rgb, "bgr8", pad=2)
    msg = types.SimpleNamespace(height=2, width=3, encoding="bgr8", step=step, data=data, is_bigendian=0)
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)
    msg.encoding = "16UC1"
    with pytest.raises(ImageEncodingError):
        image_msg_to_rgb(msg)
