"""rosbag2 bags without rosbag2_py: write them (MCAP or sqlite3) and read them back.

Everything here uses the pure-Python ``rosbags`` library, so it runs where ROS's own rosbag2
is missing (pip-installed ROS) and inside training / evaluation code that must not import
rclpy. Bags written here are ordinary rosbag2 bags: each topic's message definition (our
``arvla_msgs`` ones included, parsed from the ``.msg`` files) is embedded in the bag, so
``ros2 bag info/play``, Foxglove or the ``mcap`` CLI read them on a ROS machine.

Interruption safety: a rosbag2 bag is only complete once it has its index/footer and
``metadata.yaml``. ``rosbags``' own context manager *aborts* (drops both) on an exception, which
loses a whole recording to one Ctrl-C. :class:`BagRecorder` instead always closes properly --
on normal exit, on exceptions, and on SIGINT/SIGTERM (see :meth:`BagRecorder.stop_on_signals`),
so everything written before the interruption stays readable.

A recorder that cannot close (SIGKILL, the OOM killer, a crashed interpreter) leaves an MCAP
file without index and footer. Two things keep that recording: :class:`BagRecorder` hands what
it has written to the operating system at least every ``flush_period_s`` (1 s) and every
``chunk_bytes`` (256 KiB) of messages, so a kill loses at most that tail; and :class:`BagReader`
falls back to a streaming read of such a file, which returns every message of every complete
chunk, says so (``recovered``, ``truncated_bytes``, a warning) and stops at the first torn
record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import io
import itertools
import logging
import operator
import os
import pathlib
import signal
import sqlite3
import threading
import time
from typing import Any, Iterator, NamedTuple, Sequence

from mcap.records import Channel as McapChannel
from mcap.records import Chunk as McapChunk
from mcap.records import Header as McapHeader
from mcap.records import Message as McapMessage
from mcap.records import Schema as McapSchema
from mcap.stream_reader import StreamReader, breakup_chunk
from rosbags.interfaces import (Connection, ConnectionExtRosbag2, MessageDefinition,
                                MessageDefinitionFormat, Qos)
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

log = logging.getLogger(__name__)

ROS_STORE = Stores.ROS2_KILTED
STORAGE_FORMATS = ("mcap", "sqlite3")
_STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

# What a killed recorder may lose: BagRecorder hands the messages written since its last flush
# to the operating system (where they outlive the process) once they reach CHUNK_BYTES, and at
# least every FLUSH_PERIOD_S. For MCAP a flush closes the chunk being built, so each flushed
# chunk is complete on disk and a streaming reader can return it.
CHUNK_BYTES = 256 * 1024
FLUSH_PERIOD_S = 1.0
# rosbags' MCAP writer closes a chunk by itself beyond 1 MiB; a larger chunk_bytes would not hold.
_MAX_CHUNK_BYTES = 2**20
# The rosbags (0.11) storage-writer attributes the flush uses: the MCAP chunk being built,
# closing it, and the buffered file it is written to; the sqlite3 connection to commit.
_STORAGE_INTERNALS = {"mcap": ("chunk", "close_chunk", "bio"), "sqlite3": ("conn",)}


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

    Flush policy (what a recorder killed without closing loses): the messages written since the
    last flush are handed to the operating system -- for MCAP as one closed chunk, for sqlite3
    as a commit -- as soon as they reach ``chunk_bytes`` (default 256 KiB, at most 1 MiB) or the
    oldest of them is ``flush_period_s`` old (default 1 s; None: by size only). For MCAP a
    background thread also flushes every ``flush_period_s``, so the bound holds when messages
    stop coming; sqlite3 connections are bound to their thread, so there the age is checked at
    each write. A SIGKILL therefore loses at most the last ``flush_period_s`` of messages and
    less than ``chunk_bytes`` of them (plus a message being written at that instant);
    :class:`BagReader` reads the rest. There is no fsync: this protects against a killed
    process, not a power cut.
    """

    def __init__(self, path: str | os.PathLike[str], *, storage: str = "mcap",
                 typestore: Typestore | None = None, chunk_bytes: int = CHUNK_BYTES,
                 flush_period_s: float | None = FLUSH_PERIOD_S) -> None:
        if storage not in _STORAGE_PLUGINS:
            raise BagError(f"storage must be one of {list(STORAGE_FORMATS)}, got {storage!r}")
        if not 1 <= chunk_bytes <= _MAX_CHUNK_BYTES:
            raise BagError(f"chunk_bytes must be in [1, {_MAX_CHUNK_BYTES}] (rosbags closes MCAP "
                           f"chunks at 1 MiB by itself), got {chunk_bytes}")
        if flush_period_s is not None and not flush_period_s > 0:
            raise BagError(f"flush_period_s must be > 0 s or None, got {flush_period_s}")
        self.path = pathlib.Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already; a bag is never overwritten")
        self.storage = storage
        self.typestore = typestore if typestore is not None else make_typestore()
        self.chunk_bytes = int(chunk_bytes)
        self.flush_period_s = flush_period_s
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}
        self._counts: dict[str, int] = {}
        # Messages (and their bytes) written since the last flush: what a SIGKILL would lose.
        self._unflushed_bytes = 0
        self._unflushed_since: float | None = None  # time.monotonic() of the oldest of them
        self._flusher: threading.Thread | None = None
        self._stop_flusher = threading.Event()
        self._flush_error: BaseException | None = None
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
        missing = [a for a in _STORAGE_INTERNALS[self.storage] if not hasattr(writer.storage, a)]
        if missing:
            writer.close()
            raise BagError(f"cannot flush bag {self.path}: the installed rosbags' {self.storage} "
                           f"writer has no {missing} (arvla_data.bag needs rosbags 0.11.9, see "
                           "requirements/python.txt)")
        with self._lock:
            self._writer = writer
            self._flush()  # the MCAP header reaches the disk: a kill now leaves an empty bag
        if self.flush_period_s is not None and self.storage == "mcap":
            self._stop_flusher.clear()
            self._flusher = threading.Thread(target=self._flush_periodically, daemon=True,
                                             name=f"BagRecorder flush {self.path.name}")
            self._flusher.start()
        return self

    def close(self) -> None:
        """Write index, footer and metadata.yaml. Idempotent; safe after an error mid-way."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            self._stop_flusher.set()
            flusher.join()
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

    # -- flushing ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand every message written so far to the operating system now (see the class doc)."""
        with self._lock:
            self._require_open()
            self._flush()

    def _flush(self) -> None:
        """Close the MCAP chunk being built and flush the file / commit sqlite3 (lock held)."""
        assert self._writer is not None
        storage: Any = self._writer.storage
        if self.storage == "mcap":
            if storage.chunk.msgs:  # a chunk of only topic records waits for its messages
                storage.close_chunk()
            storage.bio.flush()
        else:
            storage.conn.commit()
        self._unflushed_bytes = 0
        self._unflushed_since = None

    def _flush_periodically(self) -> None:
        period = self.flush_period_s
        assert period is not None
        while not self._stop_flusher.wait(period):
            with self._lock:
                if self._writer is None or self._unflushed_since is None:
                    continue
                try:
                    self._flush()
                except Exception as err:  # disk full, I/O error: reported by the next write
                    self._flush_error = err
                    return

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
            if self._flush_error is not None:
                raise BagError(f"{self.path}: flushing to disk failed: {self._flush_error}"
                               ) from self._flush_error
            self._in_write = True
            try:
                writer.write(conn, int(timestamp_ns), data)
                self._counts[topic] += 1
                now = time.monotonic()
                if self._unflushed_since is None:
                    self._unflushed_since = now
                self._unflushed_bytes += data.nbytes if isinstance(data, memoryview) else len(data)
                if self._unflushed_bytes >= self.chunk_bytes or (
                        self.flush_period_s is not None
                        and now - self._unflushed_since >= self.flush_period_s):
                    self._flush()
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


class _Segment(NamedTuple):
    """One complete top-level record with messages in it (a chunk, or a message outside chunks)
    of an MCAP file read by streaming: where it is, the log times and the channels it holds."""

    offset: int
    length: int
    start_time: int
    end_time: int
    channel_ids: frozenset[int]


_SCHEMA_FORMATS = {"ros2msg": MessageDefinitionFormat.MSG, "ros2idl": MessageDefinitionFormat.IDL,
                   "omgidl": MessageDefinitionFormat.IDL}


class _RecoveredMcap:
    """The readable part of an MCAP file that lost its end (a recorder killed before closing).

    One streaming pass over the file (``mcap``'s StreamReader) collects the schemas and channels
    and notes where every complete chunk (or message outside chunks) lies, up to the first
    record that is torn or does not parse. Messages are read from there on demand, merged in log
    time order like rosbags' indexed reader does. Offers what :class:`BagReader` uses of a
    rosbags Reader: ``connections``, ``message_count``, ``messages()``, ``close()``.
    """

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.file_bytes = path.stat().st_size
        self.valid_bytes = 0          # end of the last complete record
        self.complete = False         # footer and end magic reached: nothing was cut
        self.stop_reason = ""         # why the scan stopped before the end
        self.segments: list[_Segment] = []
        self.connections: list[Connection] = []
        self.message_count = 0
        self._file: io.BufferedReader | None = path.open("rb")
        try:
            self._scan()
        except BaseException:
            self.close()
            raise

    def _scan(self) -> None:
        assert self._file is not None
        schemas: dict[int, McapSchema] = {}
        channels: dict[int, McapChannel] = {}
        counts: dict[int, int] = {}
        # No record can be longer than the file: a torn length field must not allocate GiBs.
        stream = StreamReader(self._file, emit_chunks=True,
                              record_size_limit=max(self.file_bytes, 1))
        records = stream.records
        start = 0
        header_seen = False
        while True:
            try:
                record = next(records)
                inner = (breakup_chunk(record, validate_crc=True)
                         if isinstance(record, McapChunk) else [record])
            except StopIteration:
                self.complete = True
                break
            except Exception as err:  # EndOfFile, struct/CRC/decompression/UTF-8 errors...
                self.stop_reason = (f"the record at byte {start} is cut off or does not parse: "
                                    f"{type(err).__name__} {err}".rstrip())
                break
            end = self._file.tell()
            if isinstance(record, McapHeader):
                header_seen = True
                if record.profile != "ros2":
                    raise BagError(f"cannot read bag {self.path}: MCAP profile is "
                                   f"{record.profile!r}, not 'ros2'")
            times: list[int] = []
            channel_ids: set[int] = set()
            for rec in inner:
                if isinstance(rec, McapSchema):
                    schemas[rec.id] = rec
                elif isinstance(rec, McapChannel):
                    channels[rec.id] = rec
                elif isinstance(rec, McapMessage):
                    counts[rec.channel_id] = counts.get(rec.channel_id, 0) + 1
                    times.append(rec.log_time)
                    channel_ids.add(rec.channel_id)
            if times:
                self.segments.append(_Segment(start, end - start, min(times), max(times),
                                              frozenset(channel_ids)))
            start = self.valid_bytes = end
        if not header_seen:
            raise BagError(f"cannot read bag {self.path}: not an MCAP file, or not one complete "
                           f"record in its {self.file_bytes} bytes ({self.stop_reason})")
        for cid in sorted(channels):
            ch = channels[cid]
            schema = schemas.get(ch.schema_id)
            if schema is None:  # schemaless channel: BagReader says its type is unknown
                msgtype = "__schemaless__"
                msgdef = MessageDefinition(MessageDefinitionFormat.NONE, "")
            else:
                msgtype = schema.name
                msgdef = MessageDefinition(
                    _SCHEMA_FORMATS.get(schema.encoding, MessageDefinitionFormat.NONE),
                    schema.data.decode("utf-8", errors="replace"))
            self.connections.append(Connection(
                cid, ch.topic, msgtype, msgdef, "", counts.get(cid, 0),
                ConnectionExtRosbag2(ch.message_encoding, []), self))
        # Messages whose channel record was lost cannot be typed; they are not counted.
        self.message_count = sum(c.msgcount for c in self.connections)

    @property
    def truncated_bytes(self) -> int:
        return self.file_bytes - self.valid_bytes

    def messages(self, connections: Sequence[Connection]
                 ) -> Iterator[tuple[Connection, int, bytes]]:
        by_id = {c.id: c for c in connections}
        sources = [self._segment_messages(seg, by_id) for seg in self.segments
                   if not seg.channel_ids.isdisjoint(by_id)]
        for t, conn, data in heapq.merge(*sources, key=operator.itemgetter(0)):
            if conn is not None:
                yield conn, t, data

    def _segment_messages(self, seg: _Segment, by_id: dict[int, Connection]
                          ) -> Iterator[tuple[int, Connection | None, bytes]]:
        # A marker at the segment's first log time, so heapq.merge reads a chunk only when the
        # merge reaches it (not every chunk of the bag up front).
        yield seg.start_time, None, b""
        if self._file is None:
            raise BagError(f"{self.path}: reader is closed")
        self._file.seek(seg.offset)
        blob = self._file.read(seg.length)
        (record,) = itertools.islice(StreamReader(io.BytesIO(blob), skip_magic=True,
                                                  emit_chunks=True).records, 1)
        inner = breakup_chunk(record) if isinstance(record, McapChunk) else [record]
        found = [(m.log_time, by_id[m.channel_id], m.data) for m in inner
                 if isinstance(m, McapMessage) and m.channel_id in by_id]
        yield from sorted(found, key=operator.itemgetter(0))

    def close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()


def _roll_back_hot_journal(target: pathlib.Path) -> bool:
    """Let SQLite roll back the transaction a killed sqlite3 recorder left open.

    Its rollback journal (``<bag>.db3-journal``) is then "hot", and if the kill came in the middle
    of a commit the ``.db3`` holds some of its pages; rosbags opens the file immutable, which
    ignores the journal and reads such pages as a malformed database. One read through SQLite
    restores the last commit (in place, as any SQLite client would) and deletes the journal.
    SQLite leaves the journal of a live writer alone, so a recording still running is untouched.
    Returns whether a journal was rolled back.
    """
    dbs = [target] if target.is_file() else sorted(target.glob("*.db3"))
    rolled_back = False
    for db in dbs:
        journal = db.with_name(db.name + "-journal")
        if db.suffix != ".db3" or not journal.is_file() or journal.stat().st_size == 0:
            continue
        try:
            with contextlib.closing(sqlite3.connect(db)) as con:
                con.execute("PRAGMA schema_version").fetchone()
        except sqlite3.Error as err:
            raise BagError(f"cannot read bag {target}: {db.name} was left in the middle of a "
                           f"transaction and SQLite could not roll it back: {err}") from err
        rolled_back = rolled_back or not journal.exists()
    return rolled_back


def _mcap_file(target: pathlib.Path) -> pathlib.Path | None:
    """The MCAP file a streaming read can recover: ``target`` itself or the bag directory's one
    ``.mcap`` file; None when there is none (sqlite3) or several (a split bag)."""
    if target.is_file():
        return target if target.suffix == ".mcap" else None
    files = sorted(target.glob("*.mcap"))
    return files[0] if len(files) == 1 else None


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
        self._reader: Reader | _RecoveredMcap | None = None
        self.typestore: Typestore | None = None
        # True when the recording was cut (killed recorder): an MCAP file without its end read
        # by streaming (truncated_bytes: the size of its unreadable tail), or a sqlite3 file
        # whose open transaction was rolled back.
        self.recovered = False
        self.truncated_bytes = 0

    def open(self) -> "BagReader":
        target = _bag_file(self.path)
        rolled_back = _roll_back_hot_journal(target)
        reader: Reader | _RecoveredMcap
        try:
            reader = Reader(target)
            reader.open()
        except Exception as err:  # ReaderError, struct/sqlite errors, bad YAML...
            reader = self._recover(target, err)
        if rolled_back:
            self.recovered = True
            log.warning("bag %s: recording was cut: recovered %d messages, rolled back its "
                        "uncommitted sqlite3 transaction", self.path, reader.message_count)
        self._reader = reader
        try:
            self.typestore = self._build_typestore(reader.connections)
        except BaseException:
            self.close()
            raise
        return self

    def _recover(self, target: pathlib.Path, err: Exception) -> _RecoveredMcap:
        """Stream-read the MCAP file of a bag the indexed reader refused; if nothing was cut
        from it, the refusal had another cause and is raised as it is."""
        refused = BagError(f"cannot read bag {self.path}: {err} (corrupt, truncated or not a "
                           "rosbag2 bag?)")
        mcap_file = _mcap_file(target)
        if mcap_file is None:
            raise refused from err
        try:
            recovered = _RecoveredMcap(mcap_file)
        except OSError as os_err:
            raise refused from os_err
        if recovered.complete:
            recovered.close()
            raise refused from err
        self.recovered = True
        self.truncated_bytes = recovered.truncated_bytes
        log.warning("bag %s: recording was cut: recovered %d messages, %d bytes of tail "
                    "unreadable (from byte %d of %d: %s)", self.path, recovered.message_count,
                    recovered.truncated_bytes, recovered.valid_bytes, recovered.file_bytes,
                    recovered.stop_reason or "end of file")
        return recovered

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

    def _require_open(self) -> Reader | _RecoveredMcap:
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
