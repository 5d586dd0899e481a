"""The `.mnvc` container: a versioned header, then one CRC-protected record per frame.

Layout (all integers little-endian):
  header: b"MNVC" | version u16 | config id (u16 length + utf-8) | weights hash 16 B |
          width u32 | height u32 | fps num u32 | fps den u32 | frame count u32 |
          intra period u16 | flags u32 | CRC32 u32 (of every preceding header byte)
  record: head = LEB128 varint of (payload length * 2 + frame type; 0 = I, 1 = P), 1-4 bytes, shortest
          form only | payload | frame hash 4 B (blake2b-32 of the decoded frame) |
          CRC-16/CCITT u16 (init 0xFFFF, of the record's other bytes)
The config id is `CodecConfig.stream_id()`: the config's name ("tiny") where its receiver-side fields
are the registered config's, else the name, "~" and a digest of those fields ("tiny~3f9a..."), since
a checkpoint of equal weights may differ in what has no weights (the warp, say).
Every length is checked against sanity caps and the bytes left before anything is allocated, so a
corrupt or truncated file raises BitstreamError instead of crashing, hanging or exhausting memory.

Why records are small (version 3): at the rates of the shipped models a carphone P-frame payload is
16-460 bytes, and version 2's 25-byte record (u8 type, u32 length, 16-byte hash, CRC32) was a third
of the file at the lowest rate. The 7-8 bytes here (9-10 for payloads of 8 KiB or more) keep both checks: the CRC rejects a damaged record
before any decoding (all bursts up to 16 bits; 2^-16 of random damage passes), and the 32-bit frame
hash then catches a wrong decode (2^-32 per frame), which is what the hash is for: proving that the
decoder reproduced the encoder's frame, not authenticating it.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import io
import os
import struct
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from mobilecodec.errors import BitstreamError
from mobilecodec.fsutil import atomic_path
from mobilecodec.io.frame import MAX_DIMENSION, MAX_FPS, MIN_FPS  # the readers' limits

MAGIC = b"MNVC"
# Version 2: the decoding process stores the block flow on its int16 grid (1/256 px) before the
# warp and the buffer (models.buffer.snap_to_storage); version-1 streams would decode to other frames.
# Version 3: 7-10-byte frame records (varint head, 32-bit frame hash, CRC-16) instead of 25 bytes.
# Version 4: latents whose scale table is certain (the smallest scale) are not range-coded
# (entropy.gaussian); a version-3 decoder would read them from the stream.
FORMAT_VERSION = 4
WEIGHTS_HASH_BYTES = 16
FRAME_HASH_BYTES = 4
CRC_BYTES = 2
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
MAX_CONFIG_ID_BYTES = 256
MAX_HEAD_BYTES = 4  # varint of 2 * MAX_PAYLOAD_BYTES + 1 < 2^28
MAX_INTRA_PERIOD = 2 ** 16 - 1  # the header's u16

_PREFIX = struct.Struct("<4sH")                  # magic, version
_ID_LEN = struct.Struct("<H")
_FIXED = struct.Struct(f"<{WEIGHTS_HASH_BYTES}sIIIIIHI")  # hash, w, h, fps num, fps den, frames, intra, flags
_U32 = struct.Struct("<I")
_CRC = struct.Struct("<H")
RECORD_TRAILER = FRAME_HASH_BYTES + CRC_BYTES   # bytes after the payload


def _varint(value: int) -> bytes:
    """LEB128 (7 bits per byte, low group first, high bit = more bytes follow)."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def record_head(frame_type: int, payload_bytes: int) -> bytes:
    """The varint that opens a record: payload length and frame type in one number."""
    return _varint(2 * payload_bytes + int(frame_type))


def record_overhead(payload_bytes: int) -> int:
    """Bytes a record adds to a payload of this size (head, frame hash, CRC)."""
    return len(record_head(0, payload_bytes)) + RECORD_TRAILER


def record_crc(body: bytes) -> int:
    """CRC-16/CCITT (polynomial 0x1021, init 0xFFFF) of a record's bytes before the CRC."""
    return binascii.crc_hqx(body, 0xFFFF)


class FrameType(enum.IntEnum):
    """Coding type of a frame record."""

    I = 0  # noqa: E741 - the codec's own name for an intra frame
    P = 1


@dataclass
class StreamHeader:
    """Everything a decoder needs before the first frame; `frame_count` 0 = filled in by the writer."""

    config_id: str
    weights_hash: bytes
    width: int
    height: int
    fps_num: int
    fps_den: int = 1
    frame_count: int = 0
    intra_period: int = 0
    flags: int = 0
    version: int = FORMAT_VERSION

    @property
    def fps(self) -> float:
        return self.fps_num / self.fps_den

    @property
    def nbytes(self) -> int:
        """Size of this header in the file."""
        return header_size(self.config_id)

    def validate(self) -> None:
        """Raise BitstreamError if a field is out of range (used when writing and when reading)."""
        if self.version != FORMAT_VERSION:
            raise BitstreamError(f"unsupported format version {self.version} "
                                 f"(this build reads version {FORMAT_VERSION})")
        cid = self.config_id.encode("utf-8")
        if not 0 < len(cid) <= MAX_CONFIG_ID_BYTES:
            raise BitstreamError(f"config id must be 1..{MAX_CONFIG_ID_BYTES} bytes of utf-8, "
                                 f"got {len(cid)}")
        if not self.config_id.isprintable():  # info prints it: a newline or an escape would forge lines
            raise BitstreamError(f"config id {self.config_id!r} holds non-printable characters")
        if not isinstance(self.weights_hash, (bytes, bytearray)) or len(self.weights_hash) != WEIGHTS_HASH_BYTES:
            raise BitstreamError(f"weights hash must be {WEIGHTS_HASH_BYTES} bytes")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not 0 < v <= MAX_DIMENSION:
                raise BitstreamError(f"{name} {v} outside 1..{MAX_DIMENSION}")
            if v % 2:  # no encoder writes it: 4:2:0 frames have even sizes (decode failed on its output's name)
                raise BitstreamError(f"{name} {v} is odd; 4:2:0 frames have even sizes")
        if not (0 < self.fps_num < 2 ** 32 and 0 < self.fps_den < 2 ** 32):
            raise BitstreamError(f"frame rate {self.fps_num}/{self.fps_den} is not a positive rational")
        if not MIN_FPS <= Fraction(self.fps_num, self.fps_den) <= MAX_FPS:
            raise BitstreamError(f"frame rate {self.fps_num}/{self.fps_den} outside {MIN_FPS}..{MAX_FPS} fps")
        if not 0 <= self.frame_count < 2 ** 32:
            raise BitstreamError(f"frame count {self.frame_count} out of range")
        if not 0 <= self.intra_period <= MAX_INTRA_PERIOD:
            raise BitstreamError(f"intra period {self.intra_period} outside 0..{MAX_INTRA_PERIOD}")
        if not 0 <= self.flags < 2 ** 32:
            raise BitstreamError(f"flags {self.flags} out of range")

    def to_bytes(self) -> bytes:
        """Serialized header including its CRC32."""
        self.validate()
        cid = self.config_id.encode("utf-8")
        body = (_PREFIX.pack(MAGIC, self.version) + _ID_LEN.pack(len(cid)) + cid
                + _FIXED.pack(bytes(self.weights_hash), self.width, self.height, self.fps_num,
                              self.fps_den, self.frame_count, self.intra_period, self.flags))
        return body + _U32.pack(zlib.crc32(body))


@dataclass
class FrameRecord:
    """One coded frame: type, entropy-coded payload, and the hash of the decoded frame."""

    frame_type: FrameType
    payload: bytes
    frame_hash: bytes

    @property
    def nbytes(self) -> int:
        """Size of this record in the file."""
        return record_overhead(len(self.payload)) + len(self.payload)

    def to_bytes(self) -> bytes:
        if int(self.frame_type) not in (FrameType.I, FrameType.P):
            raise ValueError(f"frame type must be 0 (I) or 1 (P), got {self.frame_type}")
        if len(self.payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        if len(self.frame_hash) != FRAME_HASH_BYTES:
            raise ValueError(f"frame hash must be {FRAME_HASH_BYTES} bytes, got {len(self.frame_hash)}")
        body = record_head(self.frame_type, len(self.payload)) + bytes(self.payload) + bytes(self.frame_hash)
        return body + _CRC.pack(record_crc(body))


def header_size(config_id: str) -> int:
    """Bytes a header with this config id takes in the file."""
    return (_PREFIX.size + _ID_LEN.size + len(config_id.encode("utf-8")) + _FIXED.size + _U32.size)


def frame_hash(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> bytes:
    """4-byte blake2b of a decoded YUV420 frame: each plane's height, width and uint8 samples."""
    h = hashlib.blake2b(digest_size=FRAME_HASH_BYTES)
    for plane in (y, u, v):
        a = np.asarray(plane)
        if a.dtype != np.uint8 or a.ndim != 2:
            raise ValueError(f"frame planes must be 2-D uint8 arrays, got {a.dtype} {a.shape}")
        h.update(struct.pack("<II", *a.shape))
        h.update(np.ascontiguousarray(a).tobytes())
    return h.digest()


class StreamWriter:
    """Writes a header and frame records to a temp file; renamed onto `path` only on success.

    `header.frame_count` 0 is patched with the number of records written; any other value must
    match it at close (ValueError otherwise, and no file is left behind).
    """

    def __init__(self, path: str | os.PathLike, header: StreamHeader) -> None:
        header.validate()
        self.path = Path(path)
        self.header = header
        self.frames_written = 0
        self.bytes_written = 0
        self._stack: ExitStack | None = None
        self._file: BinaryIO | None = None

    def __enter__(self) -> "StreamWriter":
        stack = ExitStack()
        try:
            tmp = stack.enter_context(atomic_path(self.path))
            self._file = stack.enter_context(open(tmp, "wb"))
            data = self.header.to_bytes()
            self._file.write(data)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        self.bytes_written = len(data)
        return self

    def write(self, frame_type: FrameType | int, payload: bytes, frame_hash: bytes) -> int:
        """Append one frame record; returns its size in bytes."""
        if self._file is None:
            raise RuntimeError("StreamWriter must be used as a context manager")
        data = FrameRecord(FrameType(frame_type), bytes(payload), bytes(frame_hash)).to_bytes()
        self._file.write(data)
        self.frames_written += 1
        self.bytes_written += len(data)
        return len(data)

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        if stack is None:
            return False
        if exc_type is not None:  # closes and deletes the temp file, then the error propagates
            self._file = None
            stack.__exit__(exc_type, exc, tb)
            return False
        try:
            declared = self.header.frame_count
            if declared not in (0, self.frames_written):
                raise ValueError(f"header declares {declared} frames but "
                                 f"{self.frames_written} were written")
            self.header.frame_count = self.frames_written
            assert self._file is not None
            self._file.seek(0)
            self._file.write(self.header.to_bytes())
        except BaseException as err:
            self._file = None
            stack.__exit__(type(err), err, err.__traceback__)
            raise
        self._file = None
        stack.close()  # closes the file, then renames the temp file onto the final path
        return False


def _parse_header(f: BinaryIO, size: int) -> StreamHeader:
    """Read and check the header at the start of `f` (a file of `size` bytes)."""
    prefix = f.read(_PREFIX.size)
    if not prefix:
        raise BitstreamError("not a mobilecodec stream (empty file)")
    if len(prefix) < 4 or prefix[:4] != MAGIC:
        raise BitstreamError("not a mobilecodec stream (bad magic)")
    if len(prefix) < _PREFIX.size:
        raise BitstreamError(f"stream is truncated inside the header ({size} bytes)")
    _, version = _PREFIX.unpack(prefix)
    if version != FORMAT_VERSION:
        raise BitstreamError(f"unsupported format version {version} "
                             f"(this build reads version {FORMAT_VERSION})")
    raw_len = f.read(_ID_LEN.size)
    if len(raw_len) < _ID_LEN.size:
        raise BitstreamError(f"stream is truncated inside the header ({size} bytes)")
    (id_len,) = _ID_LEN.unpack(raw_len)
    if id_len == 0 or id_len > MAX_CONFIG_ID_BYTES:
        raise BitstreamError("header is corrupt (config id length out of range)")
    rest = f.read(id_len + _FIXED.size + _U32.size)
    if len(rest) < id_len + _FIXED.size + _U32.size:
        raise BitstreamError(f"stream is truncated inside the header ({size} bytes)")
    body = prefix + raw_len + rest[:-_U32.size]
    (crc,) = _U32.unpack(rest[-_U32.size:])
    if zlib.crc32(body) != crc:
        raise BitstreamError("header is corrupt (CRC mismatch)")
    try:
        config_id = rest[:id_len].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BitstreamError("header is corrupt (config id is not utf-8)") from exc
    wh, w, h, fn, fd, count, intra, flags = _FIXED.unpack(rest[id_len:id_len + _FIXED.size])
    header = StreamHeader(config_id, wh, w, h, fn, fd, count, intra, flags, version)
    try:
        header.validate()
    except BitstreamError as exc:
        raise BitstreamError(f"header is corrupt ({exc})") from exc
    return header


class StreamReader:
    """Parses a `.mnvc` stream from a path or bytes: header on construction, frames lazily.

    Iterating yields `FrameRecord`s and raises BitstreamError on a truncated, corrupt or over-long
    stream (the check for trailing bytes happens after the last declared frame).
    """

    def __init__(self, source: str | os.PathLike | bytes | bytearray | memoryview) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            self._file: BinaryIO = io.BytesIO(data)
            self.size = len(data)
            self.path: Path | None = None
        else:
            self.path = Path(source)
            try:
                self._file = open(self.path, "rb")
            except OSError as exc:
                raise BitstreamError(f"cannot open stream {self.path}: {exc.strerror}") from exc
            self.size = os.fstat(self._file.fileno()).st_size
        try:
            self.header = _parse_header(self._file, self.size)
        except BaseException:
            self.close()
            raise
        self.header_bytes = self._file.tell()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "StreamReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[FrameRecord]:
        f = self._file
        pos = self.header_bytes
        f.seek(pos)
        count = self.header.frame_count
        for index in range(count):
            left = self.size - pos
            if left == 0:
                raise BitstreamError(f"stream is truncated: header declares {count} frames but the "
                                     f"data ends after {index} at byte offset {pos}")
            peek = f.read(min(left, MAX_HEAD_BYTES))
            ftype, length, head_len = _parse_record_head(peek, index, pos)
            if length > MAX_PAYLOAD_BYTES:
                raise BitstreamError(f"frame {index} is corrupt: payload length {length} at byte "
                                     f"offset {pos} exceeds {MAX_PAYLOAD_BYTES}")
            need = head_len + length + RECORD_TRAILER
            if left < need:
                raise BitstreamError(f"stream is truncated in frame {index}: record at byte offset "
                                     f"{pos} needs {need} bytes up to offset {pos + need}, but the "
                                     f"stream ends at {self.size}")
            f.seek(pos + head_len)
            rest = f.read(need - head_len)
            if len(rest) != need - head_len:  # file shrank while reading
                raise BitstreamError(f"stream is truncated in frame {index} at byte offset {pos}")
            body = peek[:head_len] + rest[:-CRC_BYTES]
            (crc,) = _CRC.unpack(rest[-CRC_BYTES:])
            if record_crc(body) != crc:
                raise BitstreamError(f"frame {index} is corrupt (CRC mismatch in the record at "
                                     f"byte offset {pos})")
            payload = rest[:length]
            fhash = rest[length:length + FRAME_HASH_BYTES]
            pos += need
            yield FrameRecord(FrameType(ftype), payload, fhash)
        if pos != self.size:
            raise BitstreamError(f"stream has {self.size - pos} trailing bytes after the last of its "
                                 f"{count} declared frames (byte offset {pos})")


def _parse_record_head(peek: bytes, index: int, pos: int) -> tuple[int, int, int]:
    """(frame type, payload length, head bytes) of the varint at the start of `peek`."""
    value = 0
    for i, byte in enumerate(peek):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise BitstreamError(f"frame {index} is corrupt (record head at byte offset {pos} "
                                     f"is not in its shortest form)")
            return value & 1, value >> 1, i + 1
    if len(peek) >= MAX_HEAD_BYTES:
        raise BitstreamError(f"frame {index} is corrupt (record head at byte offset {pos} is longer "
                             f"than {MAX_HEAD_BYTES} bytes)")
    raise BitstreamError(f"stream is truncated in frame {index}: record at byte offset {pos} needs "
                         f"at least {len(peek) + 1 + RECORD_TRAILER} bytes, {len(peek)} left")


def read_header(path: str | os.PathLike) -> StreamHeader:
    """Parse and check only the header of a stream file."""
    with StreamReader(path) as r:
        return r.header
