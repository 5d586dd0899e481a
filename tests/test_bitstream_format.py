"""The .mnvc container: round trip, exact layout, and rejection of every kind of damage."""

from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np
import pytest

from mobilecodec.bitstream.format import (
    FORMAT_VERSION,
    FrameType,
    StreamHeader,
    StreamReader,
    StreamWriter,
    frame_hash,
    header_size,
    read_header,
    record_overhead,
)
from mobilecodec.errors import BitstreamError

WEIGHTS = bytes(range(16))


def make_header(**kw) -> StreamHeader:
    args = dict(config_id="tiny", weights_hash=WEIGHTS, width=352, height=288, fps_num=30000,
                fps_den=1001, frame_count=0, intra_period=32, flags=5)
    args.update(kw)
    return StreamHeader(**args)


def write_stream(path, payloads, header=None):
    with StreamWriter(path, header or make_header()) as w:
        for i, p in enumerate(payloads):
            w.write(FrameType.I if i == 0 else FrameType.P, p, bytes([i]) * 4)
    return path.read_bytes()


@pytest.fixture
def small_stream(tmp_path):
    return write_stream(tmp_path / "s.mnvc", [b"\x01\x02\x03\x04", b"", b"abcdefgh"])


def read_all(data):
    with StreamReader(data) as r:
        return r.header, list(r)


def test_round_trip_and_frame_count_patch(tmp_path):
    rng = np.random.default_rng(0)
    payloads = [rng.bytes(int(n)) for n in (1000, 0, 37, 4096)]
    data = write_stream(tmp_path / "a.mnvc", payloads)
    header, records = read_all(tmp_path / "a.mnvc")
    assert header == make_header(frame_count=4)
    assert [r.payload for r in records] == payloads
    assert [r.frame_type for r in records] == [FrameType.I, FrameType.P, FrameType.P, FrameType.P]
    assert [r.frame_hash for r in records] == [bytes([i]) * 4 for i in range(4)]
    # bytes and path sources agree; sizes are what the API reports
    assert read_all(data)[1] == records
    assert len(data) == header_size("tiny") + sum(len(p) + record_overhead(len(p)) for p in payloads)
    assert read_header(tmp_path / "a.mnvc").frame_count == 4
    assert header.fps == pytest.approx(29.97002997)


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE written out bit by bit (polynomial 0x1021, init 0xFFFF, no reflection)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def test_layout_matches_hand_packed_bytes(tmp_path):
    assert crc16_ccitt(b"123456789") == 0x29B1  # the catalogued check value of CRC-16/CCITT-FALSE
    data = write_stream(tmp_path / "b.mnvc", [b"xyz", bytes(range(64)), bytes(1000)])
    hdr = (b"MNVC" + struct.pack("<H", 4) + struct.pack("<H", 4) + b"tiny" + WEIGHTS
           + struct.pack("<IIIIIHI", 352, 288, 30000, 1001, 3, 32, 5))
    hdr += struct.pack("<I", zlib.crc32(hdr))
    recs = b""
    # head: varint of 2 * length + type: 3 bytes I -> 6; 64 bytes P -> 129 = 0x81 0x01;
    # 1000 bytes P -> 2001 = 0xD1 0x0F
    for head, payload, fhash in ((b"\x06", b"xyz", bytes(4)), (b"\x81\x01", bytes(range(64)), bytes([1]) * 4),
                                 (b"\xd1\x0f", bytes(1000), bytes([2]) * 4)):
        rec = head + payload + fhash
        recs += rec + struct.pack("<H", crc16_ccitt(rec))
    assert data == hdr + recs
    assert [record_overhead(n) for n in (0, 3, 63, 64, 1000, 8191, 8192)] == [7, 7, 7, 8, 8, 8, 9]
    assert header_size("tiny") == len(hdr)


def test_record_head_must_be_shortest_and_short(tmp_path):
    data = write_stream(tmp_path / "h.mnvc", [b"xyz"])
    hdr = header_size("tiny")
    # the same record with its head 0x06 written as 0x86 0x00 (a valid LEB128, not the shortest)
    rec = b"\x86\x00xyz" + bytes(4)
    padded = data[:hdr] + rec + struct.pack("<H", crc16_ccitt(rec))
    with pytest.raises(BitstreamError, match=r"frame 0 is corrupt \(record head .* not in its shortest form"):
        read_all(padded)
    rec = b"\x86\x80\x80\x80\x00xyz" + bytes(4)
    with pytest.raises(BitstreamError, match="longer than 4 bytes"):
        read_all(data[:hdr] + rec + struct.pack("<H", crc16_ccitt(rec)))


def test_declared_frame_count_must_match(tmp_path):
    path = tmp_path / "c.mnvc"
    with pytest.raises(ValueError, match="declares 3 frames but 1"):
        with StreamWriter(path, make_header(frame_count=3)) as w:
            w.write(FrameType.I, b"ab", bytes(4))
    assert list(tmp_path.iterdir()) == []
    write_stream(path, [b"ab", b"cd"], make_header(frame_count=2))
    assert read_header(path).frame_count == 2


def test_writer_leaves_nothing_behind_on_error(tmp_path):
    path = tmp_path / "d.mnvc"
    with pytest.raises(RuntimeError, match="boom"):
        with StreamWriter(path, make_header()) as w:
            w.write(FrameType.I, b"ab", bytes(4))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # an existing file is not replaced by a failed write
    write_stream(path, [b"old"])
    before = path.read_bytes()
    with pytest.raises(ValueError):
        with StreamWriter(path, make_header()) as w:
            w.write(FrameType.I, b"ab", b"short hash")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.mnvc"]


def test_invalid_header_fields_rejected_when_writing(tmp_path):
    # rates outside 1/1000..1000 fps: no video reader produces them and no video writer takes them
    for kw in (dict(width=0), dict(height=20000), dict(fps_num=0), dict(weights_hash=b"x"),
               dict(config_id=""), dict(config_id="x" * 300), dict(intra_period=70000),
               dict(fps_num=1, fps_den=2 ** 32 - 1), dict(fps_num=2 ** 32 - 1, fps_den=1)):
        with pytest.raises(BitstreamError):
            StreamWriter(tmp_path / "e.mnvc", make_header(**kw))


def test_a_config_id_with_control_characters_is_refused(small_stream, tmp_path):
    """`info` printed a header's config id as is: a newline forged a line of its own, an ESC coloured
    the terminal; the id is refused as corrupt on reading, and on writing."""
    header = header_size("tiny") - 4  # the header's CRC-32 follows it
    for cid in (b"ti\nx", b"t\x1b[3", "t\u2028".encode()):
        bad = bytearray(small_stream[:header])
        bad[8:12] = cid.ljust(4, b"x")
        bad += struct.pack("<I", zlib.crc32(bytes(bad))) + small_stream[header + 4:]
        with pytest.raises(BitstreamError, match="non-printable"):
            StreamReader(bytes(bad))
    with pytest.raises(BitstreamError, match="non-printable"):
        StreamWriter(tmp_path / "e.mnvc", make_header(config_id="tiny\n"))


def test_bad_magic_and_version(small_stream):
    with pytest.raises(BitstreamError, match=r"not a mobilecodec stream \(bad magic\)"):
        StreamReader(b"RIFF" + small_stream[4:])
    with pytest.raises(BitstreamError, match=r"not a mobilecodec stream \(empty file\)"):
        StreamReader(b"")
    bad = bytearray(small_stream)
    bad[4:6] = struct.pack("<H", 7)
    with pytest.raises(BitstreamError, match=f"version 7.*version {FORMAT_VERSION}"):
        StreamReader(bytes(bad))


def test_header_crc(small_stream):
    bad = bytearray(small_stream)
    bad[12] ^= 0x40  # inside the weights hash
    with pytest.raises(BitstreamError, match="header is corrupt"):
        StreamReader(bytes(bad))


def test_every_header_byte_flip_is_rejected(small_stream):
    n = header_size("tiny")
    for i in range(n):
        for mask in (0x01, 0x80):
            bad = bytearray(small_stream)
            bad[i] ^= mask
            with pytest.raises(BitstreamError):
                read_all(bytes(bad))


def test_every_truncation_is_rejected(small_stream):
    for cut in range(len(small_stream)):
        with pytest.raises(BitstreamError):
            read_all(small_stream[:cut])


def test_truncation_inside_a_two_byte_record_head(tmp_path):
    """A record whose payload needs a 2-byte head (64 bytes and more), cut after its first head byte:
    the reader says truncated and names the frame, and never mistakes the cut head for a length."""
    data = write_stream(tmp_path / "t.mnvc", [b"ab", bytes(range(100))])
    second = header_size("tiny") + record_overhead(2) + 2
    assert data[second:second + 2] == b"\xc9\x01"  # 2 * 100 + 1 = 201
    for cut in (second + 1, second + 2, len(data) - 1):
        with pytest.raises(BitstreamError, match="truncated in frame 1"):
            read_all(data[:cut])


def test_truncation_message_names_frame_and_offsets(small_stream):
    hdr = header_size("tiny")
    second = hdr + record_overhead(4) + 4
    with pytest.raises(BitstreamError, match=rf"truncated in frame 1: record at byte offset {second}"):
        read_all(small_stream[:second + 5])
    with pytest.raises(BitstreamError, match="declares 3 frames but the data ends after 2"):
        read_all(small_stream[:len(small_stream) - (record_overhead(8) + 8)])


def test_record_corruption_names_frame(small_stream):
    hdr = header_size("tiny")
    bad = bytearray(small_stream)
    bad[hdr + record_overhead(4) + 4] ^= 2  # record head of frame 1: payload length 0 -> 1
    with pytest.raises(BitstreamError, match="frame 1"):
        read_all(bytes(bad))
    bad = bytearray(small_stream)
    bad[-4] ^= 0xFF  # inside the hash of frame 2
    with pytest.raises(BitstreamError, match=r"frame 2 is corrupt \(CRC mismatch"):
        read_all(bytes(bad))


def test_huge_length_does_not_allocate(small_stream):
    hdr = header_size("tiny")
    bad = bytearray(small_stream)
    bad[hdr:hdr + 4] = b"\xff\xff\xff\x7f"  # the longest head: 2^28 - 1, a length of 2^27 - 1
    with pytest.raises(BitstreamError, match="frame 0 is corrupt: payload length 134217727"):
        read_all(bytes(bad))


def test_trailing_bytes_rejected(small_stream):
    with pytest.raises(BitstreamError, match="1 trailing bytes"):
        read_all(small_stream + b"\x00")


def test_random_mutations_only_raise_bitstream_error(small_stream):
    rng = np.random.default_rng(1234)
    rejected = 0
    for _ in range(300):
        bad = bytearray(small_stream)
        pos = int(rng.integers(len(bad)))
        bad[pos] = (bad[pos] + int(rng.integers(1, 256))) % 256
        try:
            read_all(bytes(bad))
        except BitstreamError:
            rejected += 1
    # every byte is covered by a CRC or checked field: a one-byte change inside a record is a burst of
    # <= 8 bits, which a CRC-16 always detects; one in a record head also moves the record's end
    # (then the length checks, or the CRC with 1 - 2^-16, reject it; this seed's 300 all are)
    assert rejected == 300


def test_missing_file(tmp_path):
    with pytest.raises(BitstreamError, match="cannot open stream"):
        StreamReader(tmp_path / "nope.mnvc")


def test_frame_hash_matches_independent_blake2b():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 256, (4, 6), dtype=np.uint8)
    u = rng.integers(0, 256, (2, 3), dtype=np.uint8)
    v = rng.integers(0, 256, (2, 3), dtype=np.uint8)
    ref = hashlib.blake2b(struct.pack("<II", 4, 6) + y.tobytes() + struct.pack("<II", 2, 3)
                          + u.tobytes() + struct.pack("<II", 2, 3) + v.tobytes(), digest_size=4)
    assert frame_hash(y, u, v) == ref.digest()
    # dimensions are part of the hash: same samples, different shape
    assert frame_hash(y.reshape(6, 4), u, v) != frame_hash(y, u, v)
    y2 = y.copy()
    y2[0, 0] ^= 1
    assert frame_hash(y2, u, v) != frame_hash(y, u, v)
    # non-contiguous views hash like their contents
    big = np.zeros((8, 12), np.uint8)
    big[::2, ::2] = y
    assert frame_hash(big[::2, ::2], u, v) == frame_hash(y, u, v)
    with pytest.raises(ValueError):
        frame_hash(y.astype(np.int16), u, v)
