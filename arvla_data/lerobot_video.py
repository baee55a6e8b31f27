"""MP4 video for the LeRobot interop, with PyAV: frames by timestamp in, frames out.

LeRobot stores each camera as MP4 (v2.x: one file per episode; v3.0: several episodes one after
another in a file, the episode's place given by ``from_timestamp``). A row of the data at
``timestamp`` t shows the frame whose presentation time is ``from_timestamp + t``; LeRobot's own
loader accepts the nearest frame only within ``tolerance_s`` (1e-4 s), and so does
:func:`decode_at`: a frame that is not there is an error, never a neighbour.

Decoding streams: one seek to the keyframe before the first wanted time, then frames in
order, each converted to RGB only when it is wanted, so memory holds one frame at a time.
Writing (:class:`VideoWriter`) gives frame i the presentation time ``i / fps`` exactly, no
B-frames and a short GOP (LeRobot's own encoder uses GOP 2, for random access).
"""

from __future__ import annotations

import fractions
import pathlib
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from arvla_base.episode import EpisodeError

__all__ = ["VideoWriter", "decode_at", "pick_codec", "video_info"]

# Encoders preferred for export, best first; the first one the installed PyAV has is used.
CODECS = ("libx264", "mpeg4")
# Canonical names LeRobot's info.json uses for them (``video.codec``).
_CANONICAL = {"libx264": "h264", "mpeg4": "mpeg4"}


def _av() -> Any:
    try:
        import av
    except ImportError as err:  # a dependency (requirements/python.txt); say how to get it
        raise EpisodeError("LeRobot video needs PyAV: pip install av") from err
    return av


def decode_at(path: str | pathlib.Path, times: Sequence[float], *, fps: float,
              tolerance_s: float = 1e-4, where: str = "") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(i, frame)`` for every wanted presentation time ``times[i]`` (seconds, in
    non-decreasing order): the frame shown at that time as (H, W, 3) uint8 RGB.

    EpisodeError, beginning with ``where``, when the file is missing or does not decode, when
    its frame rate is not ``fps``, or when no frame lies within ``tolerance_s`` of a wanted time
    (a gap in the video, or a time past its end).
    """
    av = _av()
    path = pathlib.Path(path)
    who = f"{where}: " if where else ""
    want = np.asarray(times, np.float64)
    if want.size and np.any(np.diff(want) < 0):
        raise EpisodeError(f"{who}wanted times must not decrease (video {path})")
    if not path.is_file():
        raise EpisodeError(f"{who}video file {path} not found")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise EpisodeError(f"{who}cannot open video {path} (corrupt or not a video): {err}") from err
    with container:
        if not container.streams.video:
            raise EpisodeError(f"{who}{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        if rate and abs(float(rate) - fps) > 0.01 * fps:
            raise EpisodeError(f"{who}video {path} runs at {float(rate):g} fps, the dataset's "
                               f"fps is {fps:g} (info.json 'fps' wrong, or the wrong video)")
        if not want.size:
            return
        if stream.time_base is None:
            raise EpisodeError(f"{who}video {path} has no time base")
        j, last = 0, None
        try:
            if want[0] > tolerance_s:  # to the keyframe at or before the first wanted frame
                container.seek(int((want[0] - tolerance_s) / stream.time_base), stream=stream,
                               backward=True)
            for frame in container.decode(stream):
                t = frame.time
                if t is None:
                    raise EpisodeError(f"{who}video {path}: a frame without a timestamp")
                if want[j] < t - tolerance_s:
                    seen = f"{last:.4f} s and then {t:.4f} s" if last is not None else f"{t:.4f} s first"
                    raise EpisodeError(f"{who}video {path} has no frame at {want[j]:.4f} s "
                                       f"(frames at {seen}; tolerance {tolerance_s} s)")
                last = t
                if abs(t - want[j]) <= tolerance_s:
                    rgb = frame.to_ndarray(format="rgb24")
                    while j < len(want) and abs(t - want[j]) <= tolerance_s:
                        yield j, rgb
                        j += 1
                    if j == len(want):
                        return
        except av.error.FFmpegError as err:
            at = f" after {last:.4f} s" if last is not None else ""
            raise EpisodeError(f"{who}video {path} does not decode{at} (corrupt?): {err}") from err
        end = f"its last frame is at {last:.4f} s" if last is not None else "no frame decodes"
        raise EpisodeError(f"{who}time {want[j]:.4f} s is outside video {path} ({end})")


def pick_codec(preferred: str = "") -> str:
    """The encoder to write MP4 with: ``preferred`` if given (EpisodeError when this PyAV lacks
    it), else the first of CODECS this PyAV build has."""
    av = _av()
    if preferred:
        if preferred not in av.codecs_available:
            raise EpisodeError(f"video codec {preferred!r} is not in this PyAV build "
                               f"(have: {[c for c in CODECS if c in av.codecs_available]})")
        return preferred
    for codec in CODECS:
        if codec in av.codecs_available:
            return codec
    raise EpisodeError(f"this PyAV build has none of the encoders {list(CODECS)}")


def video_info(codec: str, fps: int, height: int, width: int) -> dict[str, Any]:
    """The ``info`` entry of a video feature in LeRobot's meta/info.json."""
    return {"video.height": height, "video.width": width, "video.codec": _CANONICAL.get(codec, codec),
            "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
            "video.channels": 3, "has_audio": False}


class VideoWriter:
    """An MP4 file written frame by frame: frame i is shown at ``i / fps`` s (yuv420p)."""

    def __init__(self, path: str | pathlib.Path, *, fps: int, height: int, width: int,
                 codec: str = "libx264", crf: int = 18, gop: int = 2) -> None:
        av = _av()
        if height % 2 or width % 2:
            raise EpisodeError(f"video {path}: yuv420p needs an even frame size, got "
                               f"{width}x{height}")
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.shape, self.frames = int(fps), (height, width, 3), 0
        self._time_base = fractions.Fraction(1, self.fps)
        self._container = av.open(str(self.path), "w")
        self._stream = self._container.add_stream(codec, rate=self.fps)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        ctx = self._stream.codec_context
        ctx.time_base = self._time_base
        ctx.gop_size = gop
        ctx.max_b_frames = 0  # presentation order = decoding order: no reordering delay
        if codec == "libx264":
            self._stream.options = {"crf": str(crf), "preset": "fast"}
        else:  # mpeg4 has no crf; its quantiser 2..31, mapped from the crf scale 0..51
            ctx.qscale = int(np.clip(round(2 + crf * 29 / 51), 2, 31))
            ctx.flags |= av.codec.context.Flags.qscale

    def write(self, frames: Iterable[np.ndarray]) -> None:
        """Append frames, each (H, W, 3) uint8 RGB (an array of them or any iterable)."""
        av = _av()
        for image in frames:
            if image.shape != self.shape or image.dtype != np.uint8:
                raise EpisodeError(f"video {self.path}: frames must be {self.shape} uint8, got "
                                   f"{image.shape} {image.dtype}")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = self.frames, self._time_base
            self._container.mux(self._stream.encode(frame))
            self.frames += 1

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        if self._container is not None:
            self._container.mux(self._stream.encode(None))  # flush the encoder
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
