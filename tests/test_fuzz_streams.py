"""A small sample of the stream fuzz campaign (benchmarks/fuzz_streams.py; the 10,000-decode run is
in docs/results/runtime.md): real carphone streams of 1, 2 and 5 frames from the shipped tiny_b0.0064, mutated
structure-aware, decoded by the PyTorch and the onnxruntime decoders in a watchdog worker. No
crash, no hang, no corrupt stream accepted silently; and the fuzzer's own parts (mutations, the
outcome judge, the watchdog) do what they claim, so that a clean result means something."""

from __future__ import annotations

import binascii
import importlib.util
import random
import struct
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = 240


def _load_fuzzer():
    spec = importlib.util.spec_from_file_location("fuzz_streams", ROOT / "benchmarks" / "fuzz_streams.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_streams"] = mod
    spec.loader.exec_module(mod)
    return mod


fz = _load_fuzzer()


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzz")
    res = fz.campaign(SAMPLE, seed=12, work=work / "work", save=work / "failures", timeout=120.0, progress=False,
                      log=lambda m: None)
    return res, work


def test_sample_has_no_crash_hang_or_silent_corruption(campaign):
    res, work = campaign
    assert (res["crashes"], res["hangs"], res["accepted_corrupt"], res["rejected_unclean"]) == (0, 0, 0, 0), res["failures"]
    assert sum(res["outcomes"].values()) == SAMPLE
    assert not (work / "failures").exists()  # nothing saved: no failing input
    # both decoders ran and rejected damaged streams; every mutation kind was tried
    for d in fz.DECODERS:
        assert res["by_decoder"][d].get("rejected", 0) > 20, res["by_decoder"]
    assert set(res["by_kind"]) == set(fz.KINDS)
    # truncation of every base stream at every record boundary (and one byte short of each end) is
    # always rejected
    assert set(res["by_kind"]["truncate"]) == {"rejected"}
    # a silently damaged payload cannot pass: payload edits with a valid CRC are rejected (exit 2),
    # or, on the onnxruntime decoder, decoded with the mismatch reported (exit 1), or decode to the
    # encoder's very frames (bits the range decoder never reads)
    assert set(res["by_kind"]["payload_crc_valid"]) <= {"rejected", "flagged", "accepted_identical"}


def _base(campaign, name="pytorch_5") -> bytes:
    _, work = campaign
    return (work / "work" / f"{name}.mnvc").read_bytes()


def _crc_ok(data: bytes, start: int, end: int) -> bool:
    return struct.unpack_from("<H", data, end - 2)[0] == binascii.crc_hqx(data[start:end - 2], 0xFFFF)


def _header_crc_ok(data: bytes, end: int) -> bool:
    return struct.unpack_from("<I", data, end - 4)[0] == zlib.crc32(data[:end - 4])


def test_structure_aware_mutations_do_what_they_say(campaign):
    data = _base(campaign)
    lay = fz.parse_layout(data)
    assert len(lay.records) == 5 and lay.records[0][0] == lay.header_end and lay.records[-1][1] == len(data)
    rng = random.Random(0)
    for _ in range(30):
        m, desc = fz.mutate(rng, data, "payload_crc_valid")
        k = int(desc.split("record ")[1].split()[0])
        s, e = lay.records[k]
        assert len(m) == len(data) and m != data
        head = fz.read_head(data, s)[2]
        assert _crc_ok(m, s, e)  # the CRC still holds: only the entropy decoder can notice
        assert m[:s + head] == data[:s + head] and m[e - 6:e - 2] == data[e - 6:e - 2] and m[e:] == data[e:]
    for _ in range(20):
        m, desc = fz.mutate(rng, data, "length_past_end")
        k = int(desc.split("record ")[1].split()[0])
        s, e = lay.records[k]
        # longer than the payload: past the end of the stream, or into the next record
        _, old_len, head = fz.read_head(data, s)
        assert old_len == e - s - head - fz.REC_TAIL
        assert fz.read_head(m, s)[1] > old_len, desc
    for _ in range(5):
        m, desc = fz.mutate(rng, data, "record_head")
        k = int(desc.split("record ")[1].split()[0])
        s, e = lay.records[k]
        t, n, head = fz.read_head(m, s)
        assert (t, n) == fz.read_head(data, s)[:2] and head > fz.read_head(data, s)[2], desc  # same value, longer
    for _ in range(20):
        m, desc = fz.mutate(rng, data, "header_field")
        if "CRC recomputed" in desc and not desc.startswith("header field id_len"):
            assert _header_crc_ok(m, lay.header_end), desc
    m, desc = fz.mutate(random.Random(3), data, "frame_type")
    k = int(desc.split("record ")[1].split()[0])
    s, e = lay.records[k]
    assert len(m) == len(data) and _crc_ok(m, s, e)
    # a real change of one frame type, nothing else but that record's CRC
    assert [fz.read_head(m, a)[0] != fz.read_head(data, a)[0] for a, _ in lay.records].count(True) == 1
    assert m[:s] == data[:s] and m[s + 1:e - 2] == data[s + 1:e - 2] and m[e:] == data[e:]


def test_judge_catches_what_it_must(campaign, tmp_path):
    """The outcome judge flags a decode that claims success but wrote frames that do not
    reproduce the stream's hashes, and a rejection that leaves an output file behind."""
    import numpy as np

    from mobilecodec.io import VideoWriter, YUVFrame

    data = _base(campaign, "pytorch_1")
    base = fz.record_hashes(data)
    grey = tmp_path / "grey.y4m"
    w = VideoWriter(grey, 176, 144, 25)
    w.write(YUVFrame(np.full((144, 176), 128, np.uint8), np.full((72, 88), 128, np.uint8),
                     np.full((72, 88), 128, np.uint8)))
    w.close()
    ok = {"exit": 0, "frames": 1, "output_exists": True}
    assert fz.judge(ok, data, base, grey, 176, 144) == "accepted_corrupt"
    assert fz.judge(ok, data, base, tmp_path / "missing.y4m", 176, 144) == "accepted_corrupt"
    assert fz.judge({"exit": 2, "error": "x", "output_exists": True}, data, base, grey, 176, 144) == "rejected_unclean"
    assert fz.judge({"exit": 2, "error": "x\ny", "output_exists": False}, data, base, grey, 176, 144) == "rejected_unclean"
    assert fz.judge({"exit": 2, "error": "BitstreamError: x", "output_exists": False}, data, base, grey,
                    176, 144) == "rejected"
    assert fz.judge({"exit": 1, "output_exists": True}, data, base, grey, 176, 144) == "flagged"
    # the independent frame hash agrees with the documented rule for a plane of known bytes
    import hashlib

    h = hashlib.blake2b(digest_size=4)
    for ph, pw in ((144, 176), (72, 88), (72, 88)):
        h.update(struct.pack("<II", ph, pw) + bytes([128]) * (ph * pw))
    assert fz.yuv_hashes(grey, 176, 144) == [h.digest()]


def test_watchdog_reports_a_hang_and_restarts(campaign, tmp_path):
    _, work = campaign
    worker = fz.Worker(work / "work" / "setup.json", timeout=120.0)
    try:
        stream = work / "work" / "pytorch_5.mnvc"
        first = worker.decode("pytorch", stream, tmp_path / "a.y4m")
        assert first["exit"] == 0 and first["frames"] == 5 == first["hash_matches"], first
        worker.timeout = 0.0  # no decode answers in 0 s: the watchdog must call it a hang
        second = worker.decode("pytorch", stream, tmp_path / "b.y4m")
        assert second["exit"] == "hang" and worker.restarts == 1 and worker.proc is None
    finally:
        worker.close()


def test_a_base_stream_that_no_longer_decodes_stops_the_campaign(campaign, tmp_path):
    """A work folder whose base streams the decoders refuse (cached from another stream format):
    every mutation counted as "rejected" and the campaign passed, exit 0. It stops now, saying so."""
    import json
    import shutil

    _, work = campaign
    copy = tmp_path / "work"
    shutil.copytree(work / "work", copy)
    cfg = json.loads((copy / "setup.json").read_text())
    cfg["package"] = str(copy / "package")
    cfg["streams"] = {k: str(copy / Path(v).name) for k, v in cfg["streams"].items()}
    (copy / "setup.json").write_text(json.dumps(cfg))
    path = copy / "pytorch_2.mnvc"
    good = path.read_bytes()
    d = bytearray(good)
    d[4:6] = struct.pack("<H", 3)  # another format version, its header CRC made good
    fz.fix_header_crc(d, fz.parse_layout(bytes(d)))
    path.write_bytes(bytes(d))
    with pytest.raises(SystemExit, match="base stream pytorch_2 of .* does not decode as encoded"):
        fz.campaign(4, seed=1, work=copy, save=tmp_path / "f", timeout=120.0, progress=False, log=lambda m: None)
    # another header layout: the job list's parse of it raised an AssertionError before the check
    path.write_bytes(good[:10] + b"\0\0\0" + good[10:])
    with pytest.raises(SystemExit, match="base stream pytorch_2 of .* does not decode as encoded"):
        fz.campaign(4, seed=1, work=copy, save=tmp_path / "f", timeout=120.0, progress=False, log=lambda m: None)
