"""Fuzz the .mnvc decoders with mutated real streams: carphone encoded with the shipped checkpoint
tiny_b0.0064 (1, 2 and 5 frames), decoded by the PyTorch decoder and by the onnxruntime decoder
(a package from `mobilecodec export`), after structure-aware mutations (payload corruption with a
valid CRC, truncation at every record boundary, header field edits, lengths pointing past the end,
frame type and hash edits, record heads in a longer form than the shortest, record drops / swaps / duplicates) and random byte flips.

Each decode runs in a worker process with a per-decode timeout (a hang kills and restarts it).
Outcome of one decode, judged as the CLI judges it (`mobilecodec decode`):
  rejected        a project error (exit 2, one line), and no output file left behind
  rejected_unclean exit 2, but an output file left behind or a message of more than one line
  flagged         decoded, but frames that do not reproduce the encoder's hash are reported (exit 1;
                  the onnxruntime decoder without --allow-drift)
  accepted        exit 0, and the written video, hashed here independently, reproduces the frame hash
                  stored in every record of the mutated stream (`identical`: same frames as the
                  unmutated stream; `valid`: a different but self-consistent stream, e.g. an edited
                  frame rate or intra period with the header CRC recomputed)
  accepted_corrupt exit 0 but the video does not reproduce the stream's hashes (silent corruption)
  crash           any other exception, or the worker died
  hang            no answer within --timeout seconds
Failing inputs (rejected_unclean, crash, hang, accepted_corrupt) are saved under --save with a JSON note.

  OMP_NUM_THREADS=1 python benchmarks/fuzz_streams.py --count 10000 --seed 0 --json fuzz.json
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without install

CHECKPOINT = "tiny_b0.0064"
LENGTHS = (1, 2, 5)
INTRA_PERIOD = 4  # 5 frames: I P P P I
DECODERS = ("pytorch", "onnxruntime")
OUTCOMES = ("rejected", "rejected_unclean", "flagged", "accepted_identical", "accepted_valid", "accepted_corrupt",
            "crash", "hang")
FAILURES = ("rejected_unclean", "accepted_corrupt", "crash", "hang")

# ---------------------------------------------------------------- an independent parser of the format
# (written from the layout in mobilecodec/bitstream/format.py's docstring, not by calling it)
MAGIC = b"MNVC"
HASH = 4              # frame hash: blake2b-32
REC_TAIL = HASH + 2   # frame hash + CRC-16/CCITT


def varint(value: int) -> bytes:
    """LEB128, low 7 bits first."""
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value >> 7 else 0))
        value >>= 7
        if not value:
            return bytes(out)


def read_head(data: bytes | bytearray, pos: int) -> tuple[int, int, int]:
    """(frame type, payload length, head bytes) of the record head (varint of 2 * length + type) at pos."""
    value = n = 0
    while True:
        byte = data[pos + n]
        value |= (byte & 0x7F) << (7 * n)
        n += 1
        if not byte & 0x80:
            return value & 1, value >> 1, n


def crc16(data: bytes | bytearray) -> int:
    return binascii.crc_hqx(bytes(data), 0xFFFF)


@dataclass
class Layout:
    """Byte spans of a well-formed stream: the header and each record."""

    header_end: int
    id_len: int
    records: list[tuple[int, int]]  # (start, end) of each record

    def fixed_at(self) -> int:
        """Offset of the fixed header fields (weights hash onwards)."""
        return 4 + 2 + 2 + self.id_len


HEADER_FIELDS = {  # name: (offset from fixed_at, struct format)
    "weights_hash": (0, "16s"), "width": (16, "<I"), "height": (20, "<I"), "fps_num": (24, "<I"),
    "fps_den": (28, "<I"), "frame_count": (32, "<I"), "intra_period": (36, "<H"), "flags": (38, "<I"),
}


def parse_layout(data: bytes) -> Layout:
    (id_len,) = struct.unpack_from("<H", data, 6)
    header_end = 8 + id_len + 16 + 4 * 5 + 2 + 4 + 4
    pos, records = header_end, []
    while pos < len(data):
        _, length, head = read_head(data, pos)
        end = pos + head + length + REC_TAIL
        records.append((pos, end))
        pos = end
    assert pos == len(data)
    return Layout(header_end, id_len, records)


def record_hashes(data: bytes) -> list[bytes] | None:
    """Frame hashes stored in the records of `data`, or None if it is not parseable here."""
    try:
        lay = parse_layout(data)
    except (struct.error, AssertionError, IndexError):
        return None
    return [data[e - REC_TAIL:e - 2] for _, e in lay.records]


def fix_header_crc(d: bytearray, lay: Layout) -> None:
    end = lay.header_end - 4
    d[end:end + 4] = struct.pack("<I", zlib.crc32(bytes(d[:end])))


def fix_record_crc(d: bytearray, start: int, end: int) -> None:
    d[end - 2:end] = struct.pack("<H", crc16(d[start:end - 2]))


def build_record(ftype: int, payload: bytes, fhash: bytes) -> bytes:
    body = varint(2 * len(payload) + ftype) + payload + fhash
    return body + struct.pack("<H", crc16(body))


def yuv_hashes(path: Path, width: int, height: int) -> list[bytes]:
    """Per-frame hash of a .y4m written by the decoder: blake2b-32 over each plane's (height,
    width) as two u32 and its samples (the documented frame-hash rule), read without the project."""
    data = path.read_bytes()
    head_end = data.index(b"\n") + 1
    pos, out = head_end, []
    cw, ch = (width + 1) // 2, (height + 1) // 2
    size = width * height + 2 * cw * ch
    while pos < len(data):
        assert data[pos:pos + 5] == b"FRAME", "bad y4m frame marker"
        pos = data.index(b"\n", pos) + 1
        frame = data[pos:pos + size]
        assert len(frame) == size, "truncated y4m frame"
        h = hashlib.blake2b(digest_size=HASH)
        off = 0
        for ph, pw in ((height, width), (ch, cw), (ch, cw)):
            h.update(struct.pack("<II", ph, pw))
            h.update(frame[off:off + ph * pw])
            off += ph * pw
        out.append(h.digest())
        pos += size
    return out


# ---------------------------------------------------------------- mutations
INTERESTING_U32 = (0, 1, 2, 3, 4, 63, 64, 65, 127, 128, 255, 256, 4096, 16383, 16384, 16385, 65535, 65536,
                   2 ** 24, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 2, 2 ** 32 - 1)


def _flip_bits(rng: random.Random, d: bytearray, lo: int, hi: int, n: int) -> None:
    for _ in range(n):
        i = rng.randrange(lo, hi)
        d[i] ^= 1 << rng.randrange(8)


def mutate(rng: random.Random, data: bytes, kind: str) -> tuple[bytes, str]:
    """One mutation of `kind` applied to the well-formed stream `data`; returns (bytes, description)."""
    lay = parse_layout(data)
    d = bytearray(data)
    recs = lay.records
    k = rng.randrange(len(recs))
    start, end = recs[k]
    ftype, _, head = read_head(d, start)
    pay_lo, pay_hi = start + head, end - REC_TAIL
    if kind == "byte_flip":
        n = rng.choice((1, 1, 2, 4, 16))
        _flip_bits(rng, d, 0, len(d), n)
        return bytes(d), f"{n} random bit flips"
    if kind == "payload_crc_valid":
        how = rng.choice(("bits", "bytes", "zero_run", "word_swap", "tail"))
        n = pay_hi - pay_lo
        if how == "bits":
            _flip_bits(rng, d, pay_lo, pay_hi, rng.choice((1, 1, 3, 8)))
        elif how == "bytes":
            for _ in range(rng.choice((1, 4, 32))):
                d[rng.randrange(pay_lo, pay_hi)] = rng.randrange(256)
        elif how == "zero_run":
            a = rng.randrange(pay_lo, pay_hi)
            b = min(pay_hi, a + rng.choice((4, 16, 256)))
            d[a:b] = bytes(b - a)
        elif how == "word_swap" and n >= 8:
            i, j = sorted(rng.sample(range(n // 4), 2))
            wi, wj = pay_lo + 4 * i, pay_lo + 4 * j
            d[wi:wi + 4], d[wj:wj + 4] = d[wj:wj + 4], d[wi:wi + 4]
        else:  # the last word: the range coder's final bits
            _flip_bits(rng, d, max(pay_lo, pay_hi - 4), pay_hi, 1)
        fix_record_crc(d, start, end)
        return bytes(d), f"payload of record {k} corrupted ({how}), CRC recomputed"
    if kind == "payload_resize_crc_valid":
        payload = bytes(d[pay_lo:pay_hi])
        how = rng.choice(("cut", "extend", "cut_odd", "extend_odd", "empty"))
        if how == "cut":
            payload = payload[:max(0, len(payload) - 4 * rng.randint(1, 4))]
        elif how == "cut_odd":
            payload = payload[:max(0, len(payload) - rng.randint(1, 3))]
        elif how == "extend":
            payload += bytes(rng.randrange(256) for _ in range(4 * rng.randint(1, 8)))
        elif how == "extend_odd":
            payload += bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
        else:
            payload = b""
        rec = build_record(ftype, payload, bytes(d[pay_hi:pay_hi + HASH]))
        return bytes(d[:start]) + rec + bytes(d[end:]), f"payload of record {k} resized ({how}), CRC recomputed"
    if kind == "truncate":
        cuts = [lay.header_end - 4, lay.header_end] + [e for _, e in recs[:-1]]
        if rng.random() < 0.5:
            cut = rng.choice(cuts)
            where = "at a record boundary"
        else:
            cut = rng.randrange(0, len(d))
            where = "inside the stream"
        return bytes(d[:cut]), f"truncated {where} at byte {cut} of {len(d)}"
    if kind == "header_field":
        name = rng.choice(list(HEADER_FIELDS) + ["version", "id_len", "config_id", "magic"])
        if name == "version":
            (old,) = struct.unpack_from("<H", d, 4)
            d[4:6] = struct.pack("<H", rng.choice([v for v in (0, 1, 2, 3, 255, 65535) if v != old]))
        elif name == "id_len":
            d[6:8] = struct.pack("<H", rng.choice((0, lay.id_len - 1, lay.id_len + 1, 256, 257, 65535)))
        elif name == "config_id":
            i = rng.randrange(8, 8 + lay.id_len)
            d[i] = rng.choice((0, 0xFF, ord("x"), 0xC3))
        elif name == "magic":
            d[rng.randrange(4)] ^= 0x20
        else:
            off, fmt = HEADER_FIELDS[name]
            at = lay.fixed_at() + off
            if fmt == "16s":
                d[at + rng.randrange(16)] ^= 1 << rng.randrange(8)
            else:
                size = struct.calcsize(fmt)
                (old,) = struct.unpack_from(fmt, d, at)
                cands = [v for v in INTERESTING_U32 if v < 2 ** (8 * size)] + [old + 1, max(0, old - 1),
                                                                                old * 2, old + 64]
                v = rng.choice([c for c in cands if c < 2 ** (8 * size) and c != old])  # a real change
                struct.pack_into(fmt, d, at, v)
        crc = rng.random() < 0.85
        if crc:
            fix_header_crc(d, lay)
        return bytes(d), f"header field {name} edited, CRC {'recomputed' if crc else 'stale'}"
    if kind == "length_past_end":
        left = len(d) - pay_lo
        v = rng.choice((left - REC_TAIL + 1, left, left + 1, 2 ** 26, 2 ** 26 + 1, 2 ** 27 - 1,
                        pay_hi - pay_lo + 4))
        body = varint(2 * v + ftype) + bytes(d[pay_lo:end - 2])
        crc = rng.random() < 0.7
        tail = struct.pack("<H", crc16(body)) if crc else bytes(d[end - 2:end])
        return (bytes(d[:start]) + body + tail + bytes(d[end:]),
                f"payload length of record {k} set to {v}, CRC {'recomputed' if crc else 'stale'}")
    if kind == "record_head":  # the same length and type, written in a longer (non-shortest) varint
        extra = rng.choice((1, 2, 4))
        long_head = bytearray(varint(2 * (pay_hi - pay_lo) + ftype))
        long_head[-1] |= 0x80
        long_head += b"\x80" * (extra - 1) + b"\x00"
        body = bytes(long_head) + bytes(d[pay_lo:end - 2])
        return (bytes(d[:start]) + body + struct.pack("<H", crc16(body)) + bytes(d[end:]),
                f"head of record {k} padded to {len(long_head)} bytes, CRC recomputed")
    if kind == "frame_type":
        body = varint(2 * (pay_hi - pay_lo) + (ftype ^ 1)) + bytes(d[pay_lo:end - 2])
        return (bytes(d[:start]) + body + struct.pack("<H", crc16(body)) + bytes(d[end:]),
                f"frame type of record {k} set to {ftype ^ 1}, CRC recomputed")
    if kind == "frame_hash":
        _flip_bits(rng, d, pay_hi, pay_hi + HASH, 1)
        fix_record_crc(d, start, end)
        return bytes(d), f"frame hash of record {k} edited, CRC recomputed"
    if kind == "records":
        blobs = [bytes(d[s:e]) for s, e in recs]
        how = rng.choice(("drop", "swap", "duplicate"))
        if how == "drop" or len(blobs) < 2 and how == "swap":
            del blobs[k]
            how = "drop"
        elif how == "swap":
            i, j = rng.sample(range(len(blobs)), 2)
            blobs[i], blobs[j] = blobs[j], blobs[i]
        else:
            blobs.insert(k, blobs[k])
        head = bytearray(d[:lay.header_end])
        struct.pack_into("<I", head, lay.fixed_at() + HEADER_FIELDS["frame_count"][0], len(blobs))
        fix_header_crc(head, lay)
        return bytes(head) + b"".join(blobs), f"records {how} (record {k}), frame count and CRCs consistent"
    if kind == "append":
        extra = bytes(rng.randrange(256) for _ in range(rng.choice((1, 4, 25, 100))))
        return bytes(d) + extra, f"{len(extra)} bytes appended"
    raise ValueError(kind)


KINDS = {  # weight of each mutation kind
    "byte_flip": 3, "payload_crc_valid": 6, "payload_resize_crc_valid": 2, "truncate": 2, "header_field": 3,
    "length_past_end": 2, "record_head": 1, "frame_type": 1, "frame_hash": 1, "records": 2, "append": 1,
}


# ---------------------------------------------------------------- the worker (one process, decoders loaded once)
def worker_main(setup: str) -> None:
    """Read job lines (JSON) on stdin, decode, answer one JSON line each on stdout."""
    import resource

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    cfg = json.loads(Path(setup).read_text())
    try:  # a corrupt stream must not make the decoder allocate without bound
        lim = int(cfg.get("memory_limit_gb", 8) * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    except (ValueError, OSError):
        pass
    import torch

    torch.set_num_threads(1)
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import decode_video
    from mobilecodec.errors import MobileCodecError
    from mobilecodec.runtime.engine import OnnxEngine
    from mobilecodec.runtime.stream import decode_package

    model, _ = load_checkpoint(cfg["checkpoint"])
    engine = OnnxEngine(cfg["package"], threads=1)
    out = os.fdopen(os.dup(1), "w")  # the answer channel; anything else printed (C code too) goes to stderr
    os.dup2(2, 1)
    for line in sys.stdin:
        job = json.loads(line)
        target = Path(job["output"])
        ans: dict = {}
        try:
            if job["decoder"] == "pytorch":  # as `mobilecodec decode --checkpoint CKPT` (hashes verified)
                s = decode_video(model, job["stream"], target, progress=False, verify=True,
                                 checkpoint=cfg["checkpoint"])
            else:  # as `mobilecodec decode --package PKG` (exit 1 on a hash mismatch)
                s = decode_package(cfg["package"], job["stream"], target, engine=engine, progress=False)
            ans = {"exit": 0 if s["hash_matches"] == s["frames"] else 1, "frames": s["frames"],
                   "hash_matches": s["hash_matches"], "width": s["width"], "height": s["height"]}
        except MobileCodecError as exc:
            ans = {"exit": 2, "error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a crash
            ans = {"exit": "crash", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        ans["output_exists"] = target.exists()
        out.write(json.dumps(ans) + "\n")
        out.flush()


class Worker:
    """A decode worker process with a watchdog: a job that takes longer than `timeout` is a hang."""

    def __init__(self, setup: Path, timeout: float) -> None:
        self.setup, self.timeout = setup, timeout
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(self.setup)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # only the worker this object started
            self.proc.wait()
            self.proc = None
            self.restarts += 1

    def decode(self, decoder: str, stream: Path, output: Path, startup: float = 120.0) -> dict:
        fresh = self.proc is None
        if fresh:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps({"decoder": decoder, "stream": str(stream), "output": str(output)}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._kill()
            return {"exit": "crash", "error": "decoder worker died before the job"}
        limit = self.timeout + (startup if fresh else 0.0)
        ready, _, _ = select.select([self.proc.stdout], [], [], limit)
        if not ready:
            self._kill()
            return {"exit": "hang", "error": f"no answer within {self.timeout:.0f} s"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.poll()
            self._kill()
            return {"exit": "crash", "error": f"decoder worker died (exit status {code})"}
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._kill()
            self.proc = None


# ---------------------------------------------------------------- setup and campaign
def prepare(work: Path, log=print) -> Path:
    """Encode the base streams and export the package (once per work folder); returns setup.json."""
    setup = work / "setup.json"
    if setup.is_file():
        return setup
    from mobilecodec.checkpoint import load_checkpoint, shipped_checkpoints
    from mobilecodec.codec.video import encode_video
    from mobilecodec.fsutil import write_json_atomic
    from mobilecodec.io import padded_size, sample_clip
    from mobilecodec.runtime.stream import encode_package

    ckpt = str(shipped_checkpoints()[CHECKPOINT])
    clip = sample_clip("carphone")
    model, _ = load_checkpoint(ckpt)
    pkg = work / "package"
    w, h = 176, 144
    pw, ph = padded_size(w, h)
    log(f"exporting {CHECKPOINT} at {ph}x{pw} with `mobilecodec export` ...")
    p = subprocess.run([sys.executable, "-m", "mobilecodec", "export", "--checkpoint", ckpt, "--size", f"{ph}x{pw}",
                        "--original-size", f"{h}x{w}", "-o", str(pkg)], capture_output=True, text=True,
                       cwd=HERE.parent)
    if p.returncode != 0:
        raise SystemExit(f"export failed: {p.stderr.strip()}")
    import torch

    from mobilecodec.runtime.engine import OnnxEngine

    streams = {}
    # Encode with the decoder workers' single thread: on some CPUs (an AMD EPYC Zen 3, AVX2) the
    # float results depend on the thread count, and the hashes reproduce only at the same one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine = OnnxEngine(pkg, threads=1)
        for n in LENGTHS:  # each decoder gets streams encoded by its own backend (hashes reproduce exactly)
            a, b = work / f"pytorch_{n}.mnvc", work / f"onnxruntime_{n}.mnvc"
            encode_video(model, clip, a, intra_period=INTRA_PERIOD, max_frames=n, progress=False)
            encode_package(pkg, clip, b, engine=engine, intra_period=INTRA_PERIOD, max_frames=n, progress=False)
            streams[f"pytorch_{n}"], streams[f"onnxruntime_{n}"] = str(a), str(b)
    finally:
        torch.set_num_threads(threads)
    # setup.json says the work folder is ready: written whole or not at all
    write_json_atomic(setup, {"checkpoint": ckpt, "package": str(pkg), "streams": streams, "width": w, "height": h})
    return setup


def judge(ans: dict, data: bytes, base_hashes: list[bytes], out: Path, width: int, height: int) -> str:
    """Outcome of one decode (see the module docstring)."""
    code = ans["exit"]
    if code in ("crash", "hang"):
        return code
    if code == 2:
        if ans.get("output_exists") or "\n" in ans.get("error", ""):
            return "rejected_unclean"  # a rejection must leave no output and say why on one line (it was
            # counted as a silently accepted corrupt stream, which it is not: a benchmark audit)
        return "rejected"
    if code == 1:
        return "flagged"
    stored = record_hashes(data)
    try:
        decoded = yuv_hashes(out, width, height) if out.exists() else None
    except (AssertionError, ValueError):
        decoded = None
    if stored is None or decoded is None or decoded != stored or len(decoded) != ans["frames"]:
        return "accepted_corrupt"
    return "accepted_identical" if decoded == base_hashes else "accepted_valid"


def campaign(count: int, seed: int, work: Path, save: Path, timeout: float, progress: bool = True,
             log=print) -> dict:
    """Run `count` mutated decodes (alternating decoders and stream lengths); returns the figures."""
    from mobilecodec.fsutil import write_bytes_atomic, write_json_atomic
    from mobilecodec.progress import progress_bar

    setup = prepare(work, log=log)
    cfg = json.loads(setup.read_text())
    bases = {k: Path(v).read_bytes() for k, v in cfg["streams"].items()}
    base_hashes = {k: record_hashes(v) for k, v in bases.items()}
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS.items())
    worker = Worker(setup, timeout)
    totals: Counter = Counter()
    by_kind: dict[str, Counter] = {}
    by_decoder: dict[str, Counter] = {d: Counter() for d in DECODERS}
    failures, accepted = [], []
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-", dir=work))
    t0 = time.perf_counter()
    jobs = []
    try:
        # every base stream first decodes as encoded: a cached work folder from another stream format or
        # checkpoint made every mutation "rejected" and the campaign pass
        for name, data in sorted(bases.items()):
            stream, out = scratch / "base.mnvc", scratch / "base.y4m"
            stream.write_bytes(data)
            out.unlink(missing_ok=True)
            ans = worker.decode(name.rsplit("_", 1)[0], stream, out)
            outcome = judge(ans, data, base_hashes[name], out, cfg["width"], cfg["height"])
            if outcome != "accepted_identical":
                raise SystemExit(f"base stream {name} of {work} does not decode as encoded ({outcome}: "
                                 f"{ans.get('error', '').strip()}); delete the --work folder to encode it again")
        # the structured part first: truncation at every record boundary of every base stream
        for name, data in sorted(bases.items()):
            lay = parse_layout(data)
            for cut in [0, 3, lay.header_end - 4, lay.header_end] + [e for _, e in lay.records[:-1]] + \
                       [e - 1 for _, e in lay.records]:
                jobs.append((name, "truncate", data[:cut], f"truncated at byte {cut} of {len(data)} (boundary sweep)"))
        jobs = jobs[:count]
        with progress_bar(total=count, desc="fuzz", unit="decode", enabled=progress) as bar:
            i = 0
            while i < count:
                if i < len(jobs):
                    name, kind, data, desc = jobs[i]
                else:
                    name = f"{DECODERS[i % 2]}_{LENGTHS[(i // 2) % len(LENGTHS)]}"
                    kind = rng.choices(kinds, weights)[0]
                    data, desc = mutate(rng, bases[name], kind)
                decoder = name.rsplit("_", 1)[0]
                stream = scratch / "case.mnvc"
                out = scratch / "case.y4m"
                stream.write_bytes(data)
                out.unlink(missing_ok=True)
                ans = worker.decode(decoder, stream, out)
                outcome = judge(ans, data, base_hashes[name], out, cfg["width"], cfg["height"])
                totals[outcome] += 1
                by_kind.setdefault(kind, Counter())[outcome] += 1
                by_decoder[decoder][outcome] += 1
                if outcome.startswith("accepted_") and outcome not in FAILURES and len(accepted) < 200:
                    accepted.append({"index": i, "base": name, "kind": kind, "mutation": desc, "outcome": outcome})
                if outcome in FAILURES:
                    save.mkdir(parents=True, exist_ok=True)
                    case = save / f"case{i:06d}_{decoder}_{outcome}"
                    # each file through a temp file, the note last: a campaign stopped here leaves no
                    # half-written case, and a case with its .json is whole
                    write_bytes_atomic(case.with_suffix(".mnvc"), data)
                    note = {"index": i, "base": name, "decoder": decoder, "kind": kind, "mutation": desc,
                            "outcome": outcome, **{k: v for k, v in ans.items() if k != "traceback"}}
                    if "traceback" in ans:
                        write_bytes_atomic(case.with_suffix(".txt"), ans["traceback"].encode())
                    write_json_atomic(case.with_suffix(".json"), note)
                    failures.append(note)
                    log(f"\n{outcome}: {decoder} {name} {desc}: {ans.get('error', '')}")
                i += 1
                bar.update(1)
                bar.set_postfix(fail=sum(totals[f] for f in FAILURES))
    finally:
        worker.close()
        shutil.rmtree(scratch, ignore_errors=True)
    wall = time.perf_counter() - t0
    return {
        "count": count, "seed": seed, "checkpoint": CHECKPOINT, "lengths": list(LENGTHS), "decoders": list(DECODERS),
        "timeout_s": timeout, "wall_s": round(wall, 1),
        "outcomes": {o: totals[o] for o in OUTCOMES},
        "crashes": totals["crash"], "hangs": totals["hang"], "accepted_corrupt": totals["accepted_corrupt"],
        "rejected_unclean": totals["rejected_unclean"],
        "by_decoder": {d: {o: c[o] for o in OUTCOMES if c[o]} for d, c in by_decoder.items()},
        "by_kind": {k: {o: c[o] for o in OUTCOMES if c[o]} for k, c in sorted(by_kind.items())},
        "worker_restarts": worker.restarts, "failures": failures[:100],
        "accepted_examples": accepted, "saved_to": str(save),
    }


def main() -> int:
    import argparse

    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2])
        return 0
    from _common import json_target

    from mobilecodec.cli.common import positive_float, work_folder

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, required=True, help="number of mutated decodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", type=json_target, help="write the figures as JSON ('-' for stdout)")
    p.add_argument("--work", type=work_folder, metavar="DIR", help="folder for the base streams and package (default: a temp folder)")
    p.add_argument("--save", type=work_folder, metavar="DIR", default=None,
                   help="where failing inputs go (default fuzz_failures, made at the first one)")
    p.add_argument("--timeout", type=positive_float, default=60.0,
                   help="seconds one decode may take before it is a hang (> 0)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    if args.count < 1:
        p.error("--count must be >= 1")
    tmp = None
    if args.work:
        work = Path(args.work).resolve()  # the export subprocess runs in the checkout, not in the cwd
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tmp := tempfile.mkdtemp(prefix="mobilecodec-fuzz-"))
    try:
        res = campaign(args.count, args.seed, work, Path(args.save or "fuzz_failures"), args.timeout, progress=not args.no_progress,
                       log=lambda m: print(m, file=sys.stderr))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    o = res["outcomes"]
    print(f"{res['count']} mutated decodes in {res['wall_s']:.0f} s: {res['crashes']} crashes, {res['hangs']} hangs, "
          f"{res['accepted_corrupt']} corrupt streams accepted silently, {res['rejected_unclean']} rejected with an "
          f"output left behind or a message of several lines; {o['rejected']} rejected (exit 2), "
          f"{o['flagged']} decoded with hash mismatches reported (exit 1), {o['accepted_identical']} decoded to the "
          f"original frames, {o['accepted_valid']} decoded as other self-consistent streams")
    for k, c in res["by_kind"].items():
        print(f"  {k:26s} " + ", ".join(f"{o} {n}" for o, n in c.items()))
    if args.json:  # '-': stdout, alone (run_main sends the text above to stderr)
        from mobilecodec.cli.common import emit_json

        emit_json(res, args.json)
    return 1 if any(res[k] for k in ("crashes", "hangs", "accepted_corrupt", "rejected_unclean")) else 0


if __name__ == "__main__":
    from _common import run_main

    run_main(main)
