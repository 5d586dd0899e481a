"""encode / decode / profile / init through the real CLI: bit-exact round trip, JSON summary,
Table 6 sizing, and every kind of bad stream or checkpoint exits 2 with a one-line message."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from mobilecodec.bitstream.format import FrameType, StreamReader, StreamWriter
from mobilecodec.errors import MobileCodecError

from cli_run import assert_clean_error, cli, cli_here



@pytest.fixture(scope="module")
def stream(tiny_checkpoint, carphone, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stream")
    out = d / "carphone.mnvc"
    cli("encode", "--checkpoint", tiny_checkpoint, carphone, "-o", out, "--frames", 5, "--intra-period", 4,
        "--json", d / "enc.json", "--no-progress", check=True)
    return out


def test_info_shows_a_streams_header_and_frames(stream, tmp_path):
    """`info STREAM`: what the header says and the records weigh, against the encoder's own summary and
    the file (no command showed a stream's header); a file that is no stream is one line, exit 2."""
    enc = json.loads((stream.parent / "enc.json").read_text())
    cli("info", stream, "--json", tmp_path / "i.json", check=True)
    s = json.loads((tmp_path / "i.json").read_text())
    assert (s["width"], s["height"], s["frames"], s["intra_period"]) == (176, 144, 5, 4)
    assert s["fps"] == "30000/1001" and s["config_id"] == enc["config_id"] and s["shipped_checkpoint"] is None
    assert [f["type"] for f in s["per_frame"]] == list("IPPPI") and s["block_modes"] == 0
    assert [8 * f["bytes"] for f in s["per_frame"]] == [f["bits"] for f in enc["per_frame"]]
    assert s["header_bytes"] + sum(f["bytes"] for f in s["per_frame"]) == s["file_bytes"] == stream.stat().st_size
    assert [f["hash"] for f in s["per_frame"]] == [f["hash"] for f in enc["per_frame"]]
    (tmp_path / "junk.mnvc").write_bytes(b"junk")
    assert_clean_error(cli_here("info", tmp_path / "junk.mnvc"), "not a mobilecodec stream")


def test_cli_round_trip_hashes_and_json(stream, tiny_checkpoint, tmp_path):
    enc = json.loads((stream.parent / "enc.json").read_text())
    assert enc["frames"] == 5 and [f["type"] for f in enc["per_frame"]] == list("IPPPI")
    assert enc["file_bytes"] == stream.stat().st_size
    assert enc["bpp"] == pytest.approx(8 * stream.stat().st_size / (5 * 176 * 144))
    # its speed is one cold run's (the first call's setup included) and says so, with its threads
    assert enc["timing"]["cold"] is True and enc["timing"]["runs"] == 1 and "threads" in enc["timing"]
    p = cli("decode", stream, "-o", tmp_path / "d.y4m", "--checkpoint", tiny_checkpoint, "--json", tmp_path / "d.json",
            "--no-progress", check=True)
    dec = json.loads((tmp_path / "d.json").read_text())
    assert dec["hash_matches"] == 5, p.stdout
    assert dec["timing"]["cold"] is True  # its seconds too are one cold run's
    assert [f["hash"] for f in dec["per_frame"]] == [f["hash"] for f in enc["per_frame"]]
    # the written video itself (read and hashed here, not by the decoder) holds the encoder's 5 frames
    assert _y4m_hashes(tmp_path / "d.y4m", 176, 144) == [f["hash"] for f in enc["per_frame"]]


def _y4m_hashes(path: Path, w: int, h: int) -> list[str]:
    """blake2b-32 of each frame of an 8-bit 4:2:0 .y4m, hashed as the format documents (each plane's
    height and width as two little-endian u32, then its samples), parsed without the project's reader."""
    import hashlib
    import struct

    data = path.read_bytes()
    pos, out, n = data.index(b"\n") + 1, [], w * h * 3 // 2
    while pos < len(data):
        assert data[pos:pos + 6] == b"FRAME\n"
        frame, pos = data[pos + 6:pos + 6 + n], pos + 6 + n
        assert len(frame) == n
        d, off = hashlib.blake2b(digest_size=4), 0
        for ph, pw in ((h, w), (h // 2, w // 2), (h // 2, w // 2)):
            d.update(struct.pack("<II", ph, pw) + frame[off:off + ph * pw])
            off += ph * pw
        out.append(d.hexdigest())
    return out


def test_sample_name_resolves_and_wrong_checkpoint_is_refused(stream, tmp_path):
    other = tmp_path / "other.pt"
    cli_here("init", "--config", "tiny", "--seed", "1", "-o", other, check=True)
    p = cli_here("decode", stream, "-o", tmp_path / "x.y4m", "--checkpoint", other)
    assert_clean_error(p, "encoded with model")
    assert not (tmp_path / "x.y4m").exists()


def test_same_weights_other_warp_is_refused_at_the_header(carphone, tmp_path):
    """Two checkpoints of equal weights whose configs differ on the receiver side (the warp has no
    weights): a stream of one is refused by the other before any frame, even with --no-verify (which
    used to write wrong frames); a config as registered keeps its plain name in the stream. In this
    process (`cli_here`: the same `main`, without 2.5 s of interpreter start-up per command)."""
    from mobilecodec.bitstream.format import read_header

    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    cli_here("init", "--config", "tiny", "-o", a, "--json", tmp_path / "a.json", check=True)
    cli_here("init", "--config", "tiny", "--warp", "block", "-o", b, "--json", tmp_path / "b.json", check=True)
    ja, jb = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert ja["weights_hash"] == jb["weights_hash"]  # what makes the header's hash alone not enough
    for ckpt, name in ((a, "a"), (b, "b")):
        cli_here("encode", "--checkpoint", ckpt, carphone, "-o", tmp_path / f"{name}.mnvc", "--frames", 2,
            "--no-progress", "--json", tmp_path / f"{name}_enc.json", check=True)
    assert read_header(tmp_path / "a.mnvc").config_id == "tiny"
    assert read_header(tmp_path / "b.mnvc").config_id.startswith("tiny~")
    for stream, ckpt in (("a", b), ("b", a)):
        p = cli_here("decode", tmp_path / f"{stream}.mnvc", "-o", tmp_path / f"{stream}.y4m", "--checkpoint", ckpt,
                "--no-verify")
        assert_clean_error(p, "encoded with model")
        assert not (tmp_path / f"{stream}.y4m").exists()
    cli_here("decode", tmp_path / "b.mnvc", "-o", tmp_path / "b.y4m", "--checkpoint", b, "--json", tmp_path / "bd.json",
        check=True)
    # encode's "config" is the config's name, decode's the header's id; "config_id" is the header's in both
    enc, dec = (json.loads((tmp_path / f).read_text()) for f in ("b_enc.json", "bd.json"))
    assert enc["config"] == "tiny" and enc["config_id"] == dec["config_id"] == read_header(tmp_path / "b.mnvc").config_id


def _mutate_file(src: Path, dst: Path, fn) -> Path:
    data = bytearray(src.read_bytes())
    dst.write_bytes(bytes(fn(data)))
    return dst


@pytest.mark.parametrize("case,words", [
    ("truncated", ("truncated",)),
    ("flipped", ("corrupt",)),
    ("magic", ("magic",)),
    ("version", ("version",)),
    ("empty", ("not a mobilecodec stream",)),
    ("flags", ("flags",)),
    ("intra_period", ("frame 3", "intra period 3")),
    ("no_frames", ("no frames",)),
    ("payload", ("frame 2:", "payload")),  # valid CRCs, bytes left over: the error named no frame
])
def test_bad_streams_exit_2(stream, tiny_checkpoint, tmp_path, case, words):
    """Damaged containers, and well-formed containers (valid CRCs) that the encoder never writes:
    unknown flags, frame types that contradict the intra period, no frames."""
    def rewrite(d: bytearray) -> bytearray:
        with StreamReader(bytes(d)) as r:
            header, records = r.header, list(r)
        header.frame_count = 0
        if case == "flags":
            header.flags = 1
        elif case == "intra_period":
            header.intra_period = 3  # the stream is I P P P I (period 4): frame 3 would be an I-frame
        elif case == "payload":
            header.frame_count = len(records)
            records[2].payload = bytes(records[2].payload) + bytes(8)
        else:
            records = []
        tmp = tmp_path / "rewritten.mnvc"
        with StreamWriter(tmp, header) as w:
            for rec in records:
                w.write(rec.frame_type, rec.payload, rec.frame_hash)
        return bytearray(tmp.read_bytes())

    def f(d: bytearray) -> bytearray:
        if case in ("flags", "intra_period", "no_frames", "payload"):
            return rewrite(d)
        if case == "truncated":
            return d[: len(d) - 37]
        if case == "flipped":
            d[len(d) // 2] ^= 0x5A
            return d
        if case == "magic":
            d[0:4] = b"XXXX"
            return d
        if case == "version":
            d[4] = 99
            return d
        return bytearray()

    bad = _mutate_file(stream, tmp_path / f"{case}.mnvc", f)
    out = tmp_path / "out.y4m"
    p = cli_here("decode", bad, "-o", out, "--checkpoint", tiny_checkpoint)
    assert_clean_error(p, *words)
    assert not out.exists() and not list(tmp_path.glob(".out.y4m*"))
    if case in ("flags", "intra_period", "no_frames"):  # info showed the contradiction as the stream (codec audit)
        assert_clean_error(cli_here("info", bad), *words)


def test_missing_inputs_exit_2(tmp_path, tiny_checkpoint, carphone):
    assert_clean_error(cli("decode", tmp_path / "nope.mnvc", "--checkpoint", tiny_checkpoint), "no such stream file")
    assert_clean_error(cli_here("encode", "--checkpoint", tmp_path / "nope.pt", carphone, "-o", tmp_path / "a.mnvc"),
                       "no such checkpoint")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert_clean_error(cli_here("encode", "--checkpoint", junk, carphone, "-o", tmp_path / "a.mnvc"),
                       "not a file torch.save writes")
    assert_clean_error(cli_here("encode", "--checkpoint", tmp_path, carphone, "-o", tmp_path / "a.mnvc"),
                       "is a folder; a checkpoint is one .pt file")
    assert not (tmp_path / "a.mnvc").exists()
    assert_clean_error(cli_here("encode", "--checkpoint", tiny_checkpoint, tmp_path / "nope.y4m", "-o", tmp_path / "a.mnvc"),
                       "no such video file")
    # a mistyped clip name was "carphon: unsupported video extension '(none)'"
    assert_clean_error(cli_here("encode", "--checkpoint", tiny_checkpoint, "carphon", "-o", tmp_path / "a.mnvc"),
                       "no such video file: carphon (nor a sample clip: bigbuckbunny, bikes, carphone)")
    assert_clean_error(cli_here("profile", "--config", "nope"), "unknown config")


def test_what_is_no_checkpoint_is_told_where_it_goes(tmp_path, tiny_package, carphone):
    """An int8 folder, an export package or a training run's state given as --checkpoint: the hint named
    --int8 to encode, eval and decode, which have none, and nothing fit for a run (walk-through audit)."""
    import torch

    from mobilecodec.train.trainer import STATE_FORMAT

    q = tmp_path / "q"
    q.mkdir()
    (q / "quantized.pt").write_bytes(b"")
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": STATE_FORMAT, "version": 1}, run / "trainer_state.pt")
    for given, words in ((q, "an int8 folder: give it to `export --int8` or `check-int8 --int8`"),
                         (tiny_package, "an export package or compile folder: give it to --package"),
                         (run, "a training run's: its checkpoints are final.pt and last.pt"),
                         (run / "trainer_state.pt", "a training run's: its checkpoints are final.pt and last.pt")):
        p = cli_here("encode", "--checkpoint", given, carphone, "-o", tmp_path / "a.mnvc")
        assert_clean_error(p, words)
        assert "goes to --int8" not in p.stderr


def test_fuzzed_streams_never_crash(tiny_checkpoint, carphone, tmp_path):
    """300 random mutations of a real stream: container-level (CRC-protected) ones, and
    payload-level ones re-wrapped with valid CRCs so the entropy decoder itself sees garbage.
    Only clean MobileCodecErrors (or a clean decode) are allowed; the run time is printed."""
    from mobilecodec.checkpoint import load_checkpoint
    from mobilecodec.codec.video import decode_video, encode_video

    model, _ = load_checkpoint(tiny_checkpoint)
    stream = tmp_path / "fuzz_src.mnvc"
    encode_video(model, carphone, stream, intra_period=2, max_frames=3, progress=False)
    original = stream.read_bytes()
    with StreamReader(stream) as r:
        header = r.header
        records = [(rec.frame_type, bytes(rec.payload), bytes(rec.frame_hash)) for rec in r]
    rng = random.Random(1234)
    t0 = time.perf_counter()
    outcomes = {"rejected": 0, "decoded": 0}
    tmp = stream.parent / "fuzz.mnvc"

    def attempt(path: Path) -> None:
        try:
            decode_video(model, path, None, progress=False)
            outcomes["decoded"] += 1
        except MobileCodecError:
            outcomes["rejected"] += 1

    for i in range(240):  # raw byte mutations, truncations, insertions
        d = bytearray(original)
        kind = i % 4
        if kind == 0:
            for _ in range(rng.randint(1, 4)):
                d[rng.randrange(len(d))] = rng.randrange(256)
        elif kind == 1:
            d = d[: rng.randrange(len(d))]
        elif kind == 2:
            pos = rng.randrange(len(d))
            d[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            pos = rng.randrange(len(d) - 8)
            del d[pos: pos + rng.randint(1, 8)]
        tmp.write_bytes(bytes(d))
        attempt(tmp)
    for _ in range(60):  # payload garbage with valid CRCs: the decoder must fail cleanly, not crash or hang
        recs = list(records)
        k = rng.randrange(len(recs))
        ftype, payload, digest = recs[k]
        p = bytearray(payload)
        for _ in range(rng.randint(1, 6)):
            p[rng.randrange(len(p))] = rng.randrange(256)
        if rng.random() < 0.3:
            p = p[: max(4, (len(p) // 2) & ~3)]
        recs[k] = (ftype, bytes(p), digest)
        header.frame_count = 0
        with StreamWriter(tmp, header) as w:
            for t, pl, dg in recs:
                w.write(FrameType(t), pl, dg)
        attempt(tmp)
    elapsed = time.perf_counter() - t0
    print(f"fuzz: {sum(outcomes.values())} mutations in {elapsed:.1f} s: {outcomes}")
    assert outcomes["rejected"] >= 250, outcomes  # almost every mutation is detected


def test_profile_matches_table6(tmp_path):
    p = cli("profile", "--config", "mobilenvc", "--size", "1080x1920", "--fps", "30", "--json", tmp_path / "p.json")
    assert p.returncode == 0, p.stderr
    assert "within 15%" in p.stdout
    res = json.loads((tmp_path / "p.json").read_text())
    # MobileNVC appendix Table 6 (params [M], kMACs/px), copied from the paper
    table6 = {"Sender": {"I-frame AE": (5.66, 116.11), "Motion pred.": (0.21, 1.66), "Motion AE": (5.59, 28.34),
                         "Residual AE": (6.82, 36.59), "Pframe total": (12.42, 64.93)},
              "Receiver": {"I-frame AE": (2.94, 93.39), "Motion pred.": (0.21, 1.66), "Motion AE": (2.91, 9.5),
                           "Residual AE": (3.18, 13.36), "Pframe total": (6.30, 24.52)}}
    for side, rows in table6.items():
        for row, (params, kmacs) in rows.items():
            got = res["complexity"]["table6"][side][row]
            assert got["params_M"] == pytest.approx(params, rel=0.15), (side, row)
            assert got["kmacs_per_px"] == pytest.approx(kmacs, rel=0.15), (side, row)
    # buffer: explicit = decoded YUV420 frame (1.5 maps) + block flow (2 maps at 1/8 x 1/8)
    assert res["buffer"]["full_res_maps"] == pytest.approx(1.5 + 2 / 64)
    assert res["buffer"]["bytes_per_frame"] == 6 * 544 * 960 + 2 * 136 * 240
    ref = res["complexity"]["table6_reference"]  # the text's comparison, in the JSON too
    assert ref["within"] is True and ref["largest_deviation"] <= 0.15
    assert ref["rows"]["Receiver"]["Motion AE"]["kmacs_per_px"] == 9.5


def test_another_config_is_compared_with_table6_for_reference_only(tmp_path):
    """`profile --config tiny` (default size 1080x1920) printed "largest deviation from Table 6:
    97.5% (NOT within 15%)": tiny is not MobileNVC, so its Table 6 columns are a reference, not a
    failed bar; the JSON held no comparison at all."""
    p = cli_here("profile", "--config", "tiny", "--json", tmp_path / "p.json")
    assert p.returncode == 0, p.stderr
    assert "NOT within" not in p.stdout and "MobileNVC's, for reference ('tiny' is another design" in p.stdout
    ref = json.loads((tmp_path / "p.json").read_text())["complexity"]["table6_reference"]
    assert ref["within"] is None and ref["largest_deviation"] > 0.15
    p = cli_here("profile", "--config", "tiny", "--size", "144x176", "--json", tmp_path / "q.json")
    assert json.loads((tmp_path / "q.json").read_text())["complexity"]["table6_reference"] is None


def test_the_npu_estimate_counts_the_buffer_at_its_own_precision(tmp_path):
    """`profile --config tiny --device 8gen2` estimated the float graphs (fp16 tensors) but counted
    the buffered flow as int8, and `--precision w8a16` as well: the buffer's bytes follow the
    estimate's precision unless --buffer-dtype says otherwise; without --device, int8 as deployed."""
    def flow(*extra: str) -> tuple[dict, dict]:
        out = tmp_path / "p.json"
        cli_here("profile", "--config", "tiny", "--size", "64x64", "--no-progress", *extra, "--json", out, check=True)
        rep = json.loads(out.read_text())
        return next(e for e in rep["buffer"]["entries"] if e["name"] == "flow"), rep.get("npu", {})

    plain, _ = flow()
    assert plain["dtype"] == "int8"
    for extra, dtype in ((["--device", "8gen2"], "float16"), (["--device", "8gen2", "--precision", "w8a16"], "int16")):
        e, npu = flow(*extra)
        assert (e["dtype"], npu["buffer_dtype"]) == (dtype, dtype), extra
        assert e["bytes"] == 2 * plain["bytes"]
        assert npu["buffer_bandwidth_mb_s"] > 0


def test_a_header_with_an_odd_size_is_corrupt(stream, tiny_checkpoint, tmp_path):
    """A header (valid CRC) saying 177x144: no encoder writes an odd size; `info` showed it, exit 0,
    and `decode` blamed its output file ("w.y4m: width and height must be even")."""
    import struct
    import zlib

    d = bytearray(stream.read_bytes())
    idlen = struct.unpack_from("<H", d, 6)[0]
    width_at, crc_at = 8 + idlen + 16, 8 + idlen + struct.calcsize("<16sIIIIIHI")
    assert struct.unpack_from("<II", d, width_at) == (176, 144)
    struct.pack_into("<I", d, width_at, 177)
    struct.pack_into("<I", d, crc_at, zlib.crc32(bytes(d[:crc_at])))
    bad = tmp_path / "w177.mnvc"
    bad.write_bytes(bytes(d))
    assert_clean_error(cli_here("info", bad), "width 177 is odd")
    assert_clean_error(cli_here("decode", bad, "--checkpoint", tiny_checkpoint, "-o", tmp_path / "w.y4m"),
                       "width 177 is odd")


def test_inputs_of_the_wrong_kind_and_another_models_stream_are_named(stream, tiny_package, carphone, tmp_path):
    """`info FOLDER` said "no such stream file", `profile FILE` "no such package folder" of files that
    exist; a stream of another model decoded with --package named a checkpoint the user never gave."""
    assert_clean_error(cli_here("info", tmp_path), "is a folder, not a stream file")
    assert_clean_error(cli_here("profile", stream), "is a file, not a package folder")
    cli_here("encode", carphone, "--checkpoint", "tiny_b0.0064", "--frames", 1, "-o", tmp_path / "a.mnvc",
             "--no-progress", check=True)
    assert_clean_error(cli_here("decode", tmp_path / "a.mnvc", "--package", tiny_package, "-o", tmp_path / "a.y4m"),
                       f"but the package {tiny_package} is")


def test_a_clip_shorter_than_frames_is_said_so(tiny_checkpoint, carphone, tmp_path):
    """`encode --frames 5` of a 2-frame clip encodes its 2 and says so in one line, as eval and baseline do
    (it was silent)."""
    from mobilecodec.io import read_frames, write_video

    clip = tmp_path / "short.y4m"
    write_video(clip, read_frames(carphone, 2), 30000 / 1001)
    p = cli_here("encode", "--checkpoint", tiny_checkpoint, clip, "-o", tmp_path / "s.mnvc", "--frames", 5,
                 "--no-progress", check=True)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "short.y4m has 2 frames, fewer than --frames 5" in lines[0], lines


def test_json_to_dev_stdout_follows_the_text(stream, tmp_path):
    """`info S --json /dev/stdout > all.txt`: the rename replaced the /dev/stdout link itself (as
    root), and a first fix opened it to write, which emptied all.txt of the text printed before;
    the JSON now follows the text, and through a pipe too."""
    import subprocess

    from cli_run import PY

    out = tmp_path / "all.txt"
    with open(out, "w") as f:
        p = subprocess.run([*PY, "info", str(stream), "--json", "/dev/stdout"], stdout=f, stderr=subprocess.PIPE,
                           text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert text.startswith("stream ") and json.loads(text[text.index("\n{") + 1:])["frames"] == 5
    piped = subprocess.run([*PY, "info", str(stream), "--json", "/dev/stdout"], capture_output=True, text=True,
                           timeout=300)
    assert piped.returncode == 0 and json.loads(piped.stdout[piped.stdout.index("\n{") + 1:])["frames"] == 5


def test_encode_into_a_fifo_reports_the_bytes_sent(tiny_checkpoint, carphone, tmp_path):
    """`encode -o pipe.mnvc` (a FIFO another program reads) reported "0 bytes, 0.0000 bpp": the size
    came from stat() of the output, which a FIFO does not have. It is the bytes written now."""
    import os
    import threading

    fifo = tmp_path / "pipe.mnvc"
    os.mkfifo(fifo)
    got = bytearray()

    def read() -> None:
        with open(fifo, "rb") as f:
            got.extend(f.read())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        p = cli_here("encode", "--checkpoint", tiny_checkpoint, carphone, "-o", fifo, "--frames", 2, "--no-progress",
                     "--json", tmp_path / "e.json", check=True)
    finally:
        if reader.is_alive():  # a failed encode never opened the FIFO: unblock the reader
            with open(fifo, "wb"):
                pass
        reader.join(60)
    summary = json.loads((tmp_path / "e.json").read_text())
    assert len(got) > 100 and summary["file_bytes"] == len(got), (summary["file_bytes"], len(got))
    assert f"{len(got)} bytes" in p.stdout
    assert StreamReader(bytes(got)).header.frame_count == 2


def test_a_stream_from_a_pipe_is_named_as_such(stream, tmp_path):
    """`cat s.mnvc | mobilecodec decode /dev/stdin` said "no such file: /dev/stdin" of a path that
    exists; decode and info read streams by seeking, so a pipe is refused as what it is."""
    import subprocess

    from cli_run import PY

    for cmd in (["decode", "/dev/stdin", "-o", str(tmp_path / "d.y4m")], ["info", "/dev/stdin"]):
        p = subprocess.run([*PY, *cmd], input=Path(stream).read_bytes(), capture_output=True, timeout=300)
        assert_clean_error(subprocess.CompletedProcess(cmd, p.returncode, p.stdout.decode(), p.stderr.decode()),
                           "/dev/stdin is not a regular file", "save it to a file first")
    assert not (tmp_path / "d.y4m").exists()
