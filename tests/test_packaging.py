"""The installed package layout: quant, export and runtime live inside the project's namespace, so
they neither shadow nor are shadowed by a user's own `export`, `quant` or `runtime` module."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    # -I: no current folder, PYTHONPATH or user site on sys.path, as for a user's own script
    return subprocess.run([sys.executable, "-I", "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_pipeline_packages_are_namespaced(tmp_path):
    ok = _run("import mobilecodec.quant, mobilecodec.export, mobilecodec.runtime, sys; "
              "print('torch' in sys.modules)", tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "False"  # importing the packages loads no torch
    for name in ("export", "quant", "runtime"):
        r = _run(f"import {name}", tmp_path)
        assert r.returncode != 0 and "No module named" in r.stderr, (name, r.stdout, r.stderr)


def test_a_users_own_runtime_module_does_not_shadow_ours(tmp_path):
    (tmp_path / "runtime.py").write_text("MINE = True\n")
    code = ("import sys; sys.path.insert(0, '.'); import runtime, mobilecodec.runtime as ours; "
            "print(runtime.MINE, hasattr(ours, 'count_module'))")
    r = _run(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True True"
