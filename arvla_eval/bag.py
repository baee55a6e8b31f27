"""rosbag2 bags without rosbag2_py: write them (MCAP or sqlite3) and read them back.

Everything here uses the pure-Python ``rosbags`` library, so it runs where ROS's own rosbag2
is missing (pip-installed ROS) and inside training / evaluation code that must not import
rclpy. Bags written here are ordinary rosbag2 bags: each topic's message definition (our
``arvla_msgs`` ones included, parsed from the ``.msg`` files) is embedded in the bag, so
``ros2 bag info/play``, Foxglove or the ``mcap`` CLI read them on a ROS machine.

Interruption safety: a rosbag2 bag is only readable once it has its index/footer and
``metadata.yaml``. ``rosbags``' own context manager *aborts* (drops both) on an exception, which
loses a whole recording to one Ctrl-C. :class:`BagRecorder` instead always closes properly --
on normal exit, on exceptions, and on SIGINT/SIGTERM (see :meth:`BagRecorder.stop_on_signals`),
so everything written before the interruption stays readable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import threading
from typing import Any, Iterator, NamedTuple, Sequence

from rosbags.interfaces import Connection, MessageDefinitionFormat, Qos
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

__all__ = [
    "BagError",
    "BagMessage",
    "BagReader",
    "BagRecorder",
    "RecordingInterrupted",
    "arvla_msg_dir",
    "load_msg_types",
    "make_typestore",
]

ROS_STORE = Stores.ROS2_KILTED
STORAGE_FORMATS = ("mcap", "sqlite3")
_STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagError(Exception):
    """A bag cannot be written or read as asked; the message names the bag and what is wrong."""


class RecordingInterrupted(KeyboardInterrupt):
    """Raised in the recording thread when SIGINT/SIGTERM arrives (after the bag is consistent).

    A KeyboardInterrupt subclass so that ``arvla``'s CLI and plain scripts treat it like Ctrl-C.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"recording interrupted by {signal.Signals(signum).name}")
        self.signum = signum


# ---------------------------------------------------------------------------------------------
# Message types


def arvla_msg_dir() -> pathlib.Path:
    """Directory holding ``arvla_msgs``' ``.msg`` files: the installed share/ (via
    AMENT_PREFIX_PATH) when there is one, else the source tree next to this package."""
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidate = pathlib.Path(prefix) / "share" / "arvla_msgs" / "msg"
        if candidate.is_dir() and any(candidate.glob("*.msg")):
            return candidate
    candidate = pathlib.Path(__file__).resolve().parents[1] / "arvla_msgs" / "msg"
    if candidate.is_dir():
        return candidate
    raise BagError("arvla_msgs message definitions not found: no share/arvla_msgs/msg under "
                   f"AMENT_PREFIX_PATH and no {candidate}")


def load_msg_types(msg_dir: str | os.PathLike[str], package: str | None = None) -> dict[str, Any]:
    """Parse every ``*.msg`` in ``msg_dir`` into rosbags type definitions named
    ``<package>/msg/<Name>`` (package defaults to the directory's parent name)."""
    msg_dir = pathlib.Path(msg_dir)
    package = package or msg_dir.parent.name
    files = sorted(msg_dir.glob("*.msg"))
    if not files:
        raise BagError(f"no .msg files in {msg_dir}")
    types: dict[str, Any] = {}
    for path in files:
        name = f"{package}/msg/{path.stem}"
        try:
            types.update(get_types_from_msg(path.read_text(encoding="utf-8"), name))
        except Exception as err:  # rosbags raises several parser error types
            raise BagError(f"cannot parse message definition {path}: {err}") from err
    return types


def make_typestore(extra_msg_dirs: Sequence[str | os.PathLike[str]] = ()) -> Typestore:
    """The ROS 2 (kilted) standard types plus ``arvla_msgs`` plus any extra ``.msg`` folders."""
    store = get_typestore(ROS_STORE)
    types = load_msg_types(arvla_msg_dir(), "arvla_msgs")
    for d in extra_msg_dirs:
        types.update(load_msg_types(d))
    store.register(types)
    return store


# ---------------------------------------------------------------------------------------------
# Writing


class BagRecorder:
    """Writes a rosbag2 bag, always leaving it closed and readable.

    Use as a context manager::

        with BagRecorder(path) as bag, bag.stop_on_signals():
            bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
            bag.write("/joint_states", t_ns, msg)          # rosbags message object
            bag.write_raw("/camera/image_raw", t_ns, cdr)  # already-serialised CDR bytes

    The bag is a directory (``metadata.yaml`` + one ``.mcap`` or ``.db3`` file); it must not
    exist yet. ``storage`` is ``"mcap"`` (default, what ``ros2 bag record`` uses since Iron) or
    ``"sqlite3"``.
    """

    def __init__(self, path: str | os.PathLike[str], *, storage: str = "mcap",
                 typestore: Typestore | None = None) -> None:
        if storage not in _STORAGE_PLUGINS:
            raise BagError(f"storage must be one of {list(STORAGE_FORMATS)}, got {storage!r}")
        self.path = pathlib.Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; a bag is never overwritten")
        self.storage = storage
        self.typestore = typestore if typestore is not None else make_typestore()
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}
        self._counts: dict[str, int] = {}
        # A signal that arrives while a message is half written is deferred until the write is
        # complete (a record cut in half would corrupt the chunk being built).
        self._in_write = False
        self._pending_signal: int | None = None
        self._lock = threading.RLock()

    # -- lifecycle --------------------------------------------------------------------------
    def open(self) -> "BagRecorder":
        if self._writer is not None:
            raise BagError(f"{self.path}: already open")
        writer = Writer(self.path, version=Writer.VERSION_LATEST,
                        storage_plugin=_STORAGE_PLUGINS[self.storage])
        try:
            writer.open()
        except Exception as err:
            raise BagError(f"cannot create bag {self.path}: {err}") from err
        self._writer = writer
        return self

    def close(self) -> None:
        """Write index, footer and metadata.yaml. Idempotent; safe after an error mid-way."""
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                try:
                    writer.close()
                except Exception as err:
                    raise BagError(f"closing bag {self.path} failed: {err}") from err

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def __enter__(self) -> "BagRecorder":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        # Close (never abort) also on exceptions: what was written so far stays readable.
        self.close()

    # -- topics and messages ----------------------------------------------------------------
    @property
    def topics(self) -> dict[str, str]:
        """topic -> message type of the topics added so far."""
        return {t: c.msgtype for t, c in self._connections.items()}

    @property
    def counts(self) -> dict[str, int]:
        """topic -> number of messages written."""
        return dict(self._counts)

    def add_topic(self, topic: str, msgtype: str, *, offered_qos: Sequence[Qos] = ()) -> None:
        """Declare ``topic`` with type ``msgtype`` (e.g. ``"arvla_msgs/msg/VLPrefix"``).

        The type must be known to the typestore so that its definition and RIHS01 hash can be
        embedded; adding the same topic twice with the same type is a no-op.
        """
        writer = self._require_open()
        with self._lock:
            if topic in self._connections:
                have = self._connections[topic].msgtype
                if have != msgtype:
                    raise BagError(f"{self.path}: topic {topic} already added as {have}, "
                                   f"cannot add it again as {msgtype}")
                return
            if msgtype not in self.typestore.fielddefs:
                raise BagError(f"{self.path}: unknown message type {msgtype!r} for topic {topic} "
                               "(not a ROS 2 kilted standard type nor an arvla_msgs type)")
            self._connections[topic] = writer.add_connection(
                topic, msgtype, typestore=self.typestore, offered_qos_profiles=list(offered_qos))
            self._counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, message: object) -> None:
        """Serialise a rosbags message object to CDR and write it at ``timestamp_ns``."""
        conn = self._connection(topic)
        try:
            data = self.typestore.serialize_cdr(message, conn.msgtype)
        except Exception as err:
            raise BagError(f"{self.path}: cannot serialise message for {topic} as "
                           f"{conn.msgtype}: {err}") from err
        self.write_raw(topic, timestamp_ns, data)

    def write_raw(self, topic: str, timestamp_ns: int, data: bytes | memoryview) -> None:
        """Write already-serialised CDR bytes (e.g. from ``rclpy.serialization``) as they are."""
        conn = self._connection(topic)
        if timestamp_ns < 0:
            raise BagError(f"{self.path}: negative timestamp {timestamp_ns} ns on {topic}")
        with self._lock:
            writer = self._require_open()
            self._in_write = True
            try:
                writer.write(conn, int(timestamp_ns), data)
                self._counts[topic] += 1
            finally:
                self._in_write = False
        pending, self._pending_signal = self._pending_signal, None
        if pending is not None:
            raise RecordingInterrupted(pending)

    # -- signals ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def stop_on_signals(self, signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)
                        ) -> Iterator["BagRecorder"]:
        """Turn SIGINT/SIGTERM into :class:`RecordingInterrupted` in the main thread.

        Raised at once unless a message is half written, then right after that write; the
        surrounding ``with BagRecorder`` closes the bag on the way out. Previous handlers are
        restored on exit. Only usable from the main thread (Python's signal rule).
        """

        def handler(signum: int, frame: object) -> None:
            if self._in_write:
                self._pending_signal = signum
                return
            raise RecordingInterrupted(signum)

        previous = {s: signal.signal(s, handler) for s in signums}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _require_open(self) -> Writer:
        if self._writer is None:
            raise BagError(f"{self.path}: bag is not open (use 'with BagRecorder(...)' or open())")
        return self._writer

    def _connection(self, topic: str) -> Connection:
        try:
            return self._connections[topic]
        except KeyError:
            raise BagError(f"{self.path}: topic {topic} was not added (add_topic first); "
                           f"added: {sorted(self._connections) or 'none'}") from None


# ---------------------------------------------------------------------------------------------
# Reading


class BagMessage(NamedTuple):
    """One message read from a bag: receive (log) time in ns and the deserialised message."""

    topic: str
    timestamp: int
    msg: Any
    msgtype: str


@dataclasses.dataclass(frozen=True)
class TopicInfo:
    msgtype: str
    count: int


def _bag_file(path: pathlib.Path) -> pathlib.Path:
    """What to hand to rosbags' Reader: the bag directory when it has metadata.yaml, else (a
    recording that died before writing metadata, e.g. ``ros2 bag record`` killed) its single
    storage file."""
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        files = sorted([*path.glob("*.mcap"), *path.glob("*.db3")])
        if len(files) != 1:
            raise BagError(f"{path} is not a rosbag2 bag: no metadata.yaml and "
                           f"{len(files)} .mcap/.db3 files (need exactly one)")
        return files[0]
    return path


class BagReader:
    """Reads rosbag2 bags (MCAP or sqlite3, from rosbags or ``ros2 bag record``).

    Message types are taken from the definitions embedded in the bag; types a bag does not
    embed (older sqlite3 bags) come from the ROS 2 kilted store plus ``arvla_msgs``.
    ``path`` may be the bag directory or a bare ``.mcap`` / ``.db3`` file.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 default_typestore: Typestore | None = None) -> None:
        self.path = pathlib.Path(path)
        self._default = default_typestore
        self._reader: Reader | None = None
        self.typestore: Typestore | None = None

    def open(self) -> "BagReader":
        target = _bag_file(self.path)
        try:
            reader = Reader(target)
            reader.open()
        except Exception as err:  # ReaderError, struct/sqlite errors, bad YAML...
            raise BagError(f"cannot read bag {self.path}: {err} (corrupt, truncated or not a "
                           "rosbag2 bag?)") from err
        self._reader = reader
        try:
            self.typestore = self._build_typestore(reader.connections)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def __enter__(self) -> "BagReader":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build_typestore(self, connections: Sequence[Connection]) -> Typestore:
        embedded: dict[str, Any] = {}
        for conn in connections:
            fmt, text = conn.msgdef.format, conn.msgdef.data
            try:
                if fmt == MessageDefinitionFormat.MSG and text:
                    embedded.update(get_types_from_msg(text, conn.msgtype))
                elif fmt == MessageDefinitionFormat.IDL and text:
                    sep = "=" * 80 + "\n"
                    parts = text.split(sep)[1:] if text.startswith(sep + "IDL: ") else [None, text]
                    for part in parts:
                        if part is None:
                            continue
                        idl = part.split("\n", 1)[1] if part.startswith("IDL: ") else part
                        embedded.update(get_types_from_idl(idl))
            except Exception as err:
                raise BagError(f"{self.path}: embedded definition of {conn.msgtype} (topic "
                               f"{conn.topic}) does not parse: {err}") from err
        store = get_typestore(Stores.EMPTY)
        store.register(embedded)
        default = self._default if self._default is not None else make_typestore()
        store.register({k: v for k, v in default.fielddefs.items() if k not in store.fielddefs})
        return store

    def _require_open(self) -> Reader:
        if self._reader is None:
            raise BagError(f"{self.path}: reader is not open (use 'with BagReader(...)')")
        return self._reader

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """topic -> (message type, message count)."""
        reader = self._require_open()
        out: dict[str, TopicInfo] = {}
        for conn in reader.connections:
            prev = out.get(conn.topic)
            out[conn.topic] = TopicInfo(conn.msgtype, conn.msgcount + (prev.count if prev else 0))
        return out

    @property
    def message_count(self) -> int:
        return int(self._require_open().message_count)

    def messages(self, topics: Sequence[str] | None = None, *, missing_ok: bool = False
                 ) -> Iterator[BagMessage]:
        """Yield messages of ``topics`` (all when None) in timestamp order.

        A requested topic that the bag does not have is an error naming the topics it does have,
        unless ``missing_ok``. A message whose type is unknown or whose bytes do not deserialise
        raises BagError naming topic and time.
        """
        reader = self._require_open()
        assert self.typestore is not None
        conns = list(reader.connections)
        if topics is not None:
            wanted = list(dict.fromkeys(topics))
            have = {c.topic for c in conns}
            missing = [t for t in wanted if t not in have]
            if missing and not missing_ok:
                raise BagError(f"bag {self.path} has no topic(s) {missing}; it has: "
                               f"{sorted(have) or 'no topics'}")
            conns = [c for c in conns if c.topic in wanted]
            if not conns:
                return
        for conn in conns:
            if conn.msgtype not in self.typestore.fielddefs:
                raise BagError(f"bag {self.path}: topic {conn.topic} has type {conn.msgtype}, "
                               "which is neither embedded in the bag nor a known type")
        try:
            for conn, t_ns, raw in reader.messages(connections=conns):
                try:
                    msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
                except Exception as err:
                    raise BagError(f"bag {self.path}: message on {conn.topic} at t={t_ns} ns "
                                   f"does not deserialise as {conn.msgtype}: {err}") from err
                yield BagMessage(conn.topic, int(t_ns), msg, conn.msgtype)
        except BagError:
            raise
        except Exception as err:
            raise BagError(f"bag {self.path}: reading failed: {err} (corrupt or truncated?)") from err


def read_messages(path: str | os.PathLike[str], topics: Sequence[str] | None = None, *,
                  missing_ok: bool = False) -> Iterator[BagMessage]:
    """Convenience: open ``path``, yield its messages (see :meth:`BagReader.messages`), close."""
    with BagReader(path) as reader:
        yield from reader.messages(topics, missing_ok=missing_ok)


__all__ += ["TopicInfo", "read_messages"]
