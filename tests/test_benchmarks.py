"""The benchmark scripts' shared parts (benchmarks/_common.py) and their work counts: no speed is
measured or asserted here (speed is measured by the scripts themselves, never by timed tests)."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import _common  # noqa: E402


def _module_imports(path: Path) -> list[str]:
    """Top-level imported module names of a script, in order."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            out.append(node.module)
    return out


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py") if p.name != "_common.py"))
def test_common_is_imported_before_torch(script):
    """_common sets OMP_WAIT_POLICY, which OpenMP reads once, when torch loads: a script that imports
    torch (or a mobilecodec module, which may) at the top must import _common first."""
    mods = _module_imports(BENCH / script)
    first_heavy = next((i for i, m in enumerate(mods) if m.split(".")[0] in ("torch", "mobilecodec")), None)
    if first_heavy is not None:
        assert "_common" in mods[:first_heavy], f"{script} imports {mods[first_heavy]} before _common"


@pytest.mark.parametrize("interleave", [True, False])
def test_compare_ticks_once_per_call(interleave):
    ticks = []
    n = {"a": 0, "b": 0}

    def fn(k):
        def call():
            n[k] += 1
        return call

    res = _common.compare({"a": fn("a"), "b": fn("b")}, 8, interleave, tick=lambda: ticks.append(1))
    assert len(ticks) == _common.calls(2, 8) == n["a"] + n["b"]
    assert res["a"]["runs"] == res["b"]["runs"] == 8


def test_roofline_helpers():
    assert _common.fraction(None, 2.0) is None and _common.fraction(1.0, None) is None
    assert _common.fraction(1.0, 4.0) == 0.25
    assert _common.conv_roof(None, "int8") is None and _common.copy_roof({}) is None
    conv = {"int8_qdq_gmacs_per_s": 300.0, "float32_gmacs_per_s": 100.0, "pytorch_float32_gmacs_per_s": 60.0}
    roof = {"conv": conv, "copy": {"gb_per_s": 30.0}}
    assert _common.conv_roof(roof, "int8") == 300.0 and _common.conv_roof(roof, "best_float32") == 100.0
    assert _common.copy_roof(roof) == 30.0
    assert "not measured" in _common.roofline_line(None)
    m = _common.copy_bandwidth(mib=1, runs=3)
    # read + write of 1 MiB; the best copy is at least as fast as the median one (no speed asserted:
    # these machines are shared, and benchmarks measure speed, tests do not)
    assert m["bytes_moved_per_copy"] == 2 << 20 and m["rounds"] == 3 and m["threads"] == 1
    assert 0 < m["median_gb_per_s"] <= m["gb_per_s"] < math.inf


def test_sad_terms_count_the_kernels_windows():
    from motion_search_speed import sad_terms

    # full search up to radius 8: every pixel once per vector, and once more for the zero vector
    assert sad_terms(64, 128, 8, 6) == 64 * 128 * (13 * 13 + 1)
    # coarse to fine, radius 12 on 64x64: the coarse grid is 16x16 sums, blocks every 2, windows of 4
    # clipped to the frame (3 + 6 x 4 + 3 = 30 rows and columns), vectors within 3 coarse steps;
    # then 64x64 pixels x (49 around zero + the zero vector + 49 around the coarse one + 8 neighbours)
    assert sad_terms(64, 64, 8, 12) == 30 * 30 * 7 * 7 + 64 * 64 * (49 + 1 + 49 + 8)


def test_int_hyper_macs_match_torch_flop_counter():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from host_steps import int_hyper_macs
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny")).eval()
    model.update()
    for p in ("m", "r"):
        shape = model.latent_shapes(256, 320)[p][1]
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            getattr(model, f"{p}_hyper_synthesis")(torch.zeros(shape))
        assert int_hyper_macs(model.int_hyper(p), shape) == fc.get_total_flops() // 2


@pytest.mark.parametrize("spelling", [["--json", "-"], ["--js", "-"], ["--jso=-"]])
def test_json_to_stdout_is_the_json_alone(spelling):
    """`--json -` of a benchmark put its report and the machine note on stdout before the JSON, so
    `| python -m json.tool` failed ("Extra data"): the text goes to stderr, as a command's does. So
    for the abbreviations argparse takes (`--js -` still put the text first: a benchmark audit)."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, str(BENCH / "entropy_throughput.py"), "--symbols", "2000", "--runs", "8",
                           "--no-roofline", *spelling], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout)
    assert res["note"] and res["note"] in proc.stderr  # the text, on stderr


def test_json_to_stdout_reads_argv_as_argparse_does():
    from mobilecodec.cli.common import json_to_stdout

    assert json_to_stdout(["--json", "-"]) and json_to_stdout(["x", "--j", "-"]) and json_to_stdout(["--json=-"])
    assert not json_to_stdout(["--json", "out.json"]) and not json_to_stdout(["--json=-x"])
    assert not json_to_stdout(["--", "--json", "-"]) and not json_to_stdout(["-", "--json"])
    assert not json_to_stdout(["--jsonl", "-"]) and not json_to_stdout(["--", "-"])


@pytest.mark.parametrize("script", ["entropy_throughput.py", "fuzz_streams.py"])
def test_a_json_target_that_cannot_be_written_is_refused_before_measuring(script, tmp_path):
    """`--json FOLDER` was refused only after the whole measurement (minutes for decode_speed): asked
    for far more work than the timeout allows, the scripts are refused while parsing."""
    import subprocess

    proc = subprocess.run([sys.executable, str(BENCH / script), "--json", str(tmp_path),
                           *(["--symbols", "200000000"] if script == "entropy_throughput.py" else ["--count", "100000"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"output {tmp_path} is a folder; name a file" in proc.stderr, proc.stderr[-2000:]


def test_train_speed_warms_every_rollout_depth_a_compiled_step_meets():
    """train_speed warmed two steps of each variant whatever the rounds ran: `--steps 1` warmed one, and
    in a rollout phase (random depths 0-12) each new depth recompiled the `compile` variant inside the
    timed rounds (a benchmark audit)."""
    from train_speed import _warmup_steps

    assert _warmup_steps(["a"], [None], compiled=False) == [("a", None), ("a", None)]
    assert _warmup_steps(["a", "b", "c"], [1, 2, 3], compiled=False) == [("a", 1), ("b", 2)]
    assert _warmup_steps(["a", "b", "c", "d", "e"], [0, 3, 0, 5, 3], compiled=True) == [("a", 0), ("b", 3), ("d", 5)]
