"""Shared fixtures: a per-session cache folder and the sample clips (converted once per session)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_OWN_CACHE: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point MOBILECODEC_CACHE at a fresh temporary folder unless the caller chose one."""
    global _OWN_CACHE
    if not os.environ.get("MOBILECODEC_CACHE"):
        _OWN_CACHE = tempfile.mkdtemp(prefix="mobilecodec-test-cache-")
        os.environ["MOBILECODEC_CACHE"] = _OWN_CACHE


def pytest_unconfigure(config: pytest.Config) -> None:
    global _OWN_CACHE
    if _OWN_CACHE is not None:
        os.environ.pop("MOBILECODEC_CACHE", None)
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
        _OWN_CACHE = None


def _host_threads() -> tuple:
    """(torch's, the integer kernels', mobilecodec's) host thread counts of this process."""
    import torch

    from mobilecodec.entropy import int_kernels
    from mobilecodec.runtime import threads

    return torch.get_num_threads(), int_kernels._THREADS, threads._THREADS


def _set_host_threads(counts: tuple) -> None:
    import torch

    from mobilecodec.entropy import int_kernels
    from mobilecodec.runtime import threads

    torch.set_num_threads(counts[0])
    int_kernels.set_num_threads(counts[1])
    threads._THREADS = counts[2]


@pytest.fixture(scope="session", autouse=True)
def host_threads_at_start() -> tuple:
    """The thread counts the session started with (session fixtures are set up before module ones)."""
    return _host_threads()


@pytest.fixture(autouse=True)
def _restore_host_threads(host_threads_at_start):
    """A command run in-process with `--threads N` (`runtime.threads.set_threads`) sets torch's and
    the integer kernels' thread counts for the whole process. Every test starts and ends at the
    session's starting counts, so neither an earlier test nor a module fixture that ran a command
    (set up before this fixture) leaves its count to the tests after it (hash checks assume one
    count per encode/decode pair)."""
    _set_host_threads(host_threads_at_start)
    yield
    _set_host_threads(host_threads_at_start)


@pytest.fixture(scope="session")
def carphone() -> Path:
    """carphone as .y4m: 176x144, 120 frames, 30000/1001 fps."""
    from mobilecodec.io import sample_clip
    return sample_clip("carphone")


@pytest.fixture(scope="session")
def bikes() -> Path:
    """bikes as .y4m: 640x272, 250 frames, 25 fps."""
    from mobilecodec.io import sample_clip
    return sample_clip("bikes")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised `tiny` checkpoint (seed 0) with its entropy-coding tables, made to
    range-code its latents (`models_for_tests.code_latents`), as a trained codec does."""
    import torch

    from mobilecodec.checkpoint import save_checkpoint
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from models_for_tests import code_latents

    torch.manual_seed(0)
    model = code_latents(VideoCodec(get_config("tiny")))
    model.update()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_seed0.pt", model)


@pytest.fixture(scope="session")
def tiny_package(tiny_checkpoint, tmp_path_factory) -> Path:
    """The `tiny_checkpoint` model exported as a float package at 192x192 (carphone 176x144 pads
    to 192x192); shared by the runtime and profiler tests."""
    from mobilecodec.export.onnx_export import export_package
    from mobilecodec.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tiny_checkpoint)
    out = tmp_path_factory.mktemp("pkg") / "tiny192"
    export_package(model, out, 192, 192, original_size=(144, 176))
    return out
