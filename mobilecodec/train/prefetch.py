"""Training batches of future steps built ahead by worker processes.

On a GPU the CPU-side GOP sampling would hold the loop back: a batch of 8 GOPs of 33 frames at
256x256 takes 0.4-2.5 s on one core of the AMD EPYC (stills with synthetic motion are the
slowest), as long as a whole GOP-32 step on an H200 (2.4 s with two runs sharing it). A step's batch depends only on (seed, rank, step) (`trainer.step_rng`), so
workers can draw the batches of the next steps while the GPU trains, and the batches are the
ones the loop would have drawn itself: a run with workers equals one without, and resumes stay
exact. On an H200 (session 18), seven workers per run kept the GPU 97-100 % busy with two GOP-32
runs side by side.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.pool import AsyncResult

import numpy as np

#: (numpy generator of a step) from (step); built by the trainer from its seed and rank.
RngOf = Callable[[int], np.random.Generator]

_worker_data = None  # the TrainingData of a worker process


def _draw(rng_of: RngOf, step: int, batch_size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = rng_of(step)
    samples = [_worker_data.sample(rng) for _ in range(batch_size)]
    return [s[0] for s in samples], [s[1] for s in samples]


def _init(data: object) -> None:
    """A worker's set-up: its copy of the data, and Ctrl-C left to the trainer, which ends the pool
    (a worker that died of the terminal's SIGINT while holding the task queue's lock left
    `pool.terminate()` waiting for ever, and printed a traceback per worker)."""
    global _worker_data
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_data = data


class BatchPrefetcher:
    """Draws the batches of steps `step .. step + depth - 1` in `workers` processes, each holding
    a copy of `data`, the trainer's `TrainingData` (it pickles as references to its cached clips,
    stills and checked septuplet folders: a few kB, and no worker repeats the checks).

    `get(step)` returns (ys, uvs), the uint8 GOP crops `TrainingData.batch` would turn into a
    tensor with the generator `rng_of(step)`. Steps must be asked for in increasing order, none
    beyond `last_step`. Use as a context manager, so the workers end with the run."""

    def __init__(self, data: object, rng_of: RngOf, batch_size: int, workers: int,
                 last_step: int, depth: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.rng_of, self.batch_size, self.last_step = rng_of, batch_size, last_step
        self.depth = depth or 2 * workers
        # spawn, not fork: the trainer has CUDA (and torch's thread pools) running, and a fork of
        # such a process may deadlock; fresh workers unpickle the trainer's TrainingData instead.
        self.pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init, initargs=(data,))
        self.pending: dict[int, AsyncResult] = {}
        self.next_step: int | None = None  # the first step not submitted yet
        self.last: int | None = None  # the step asked for last

    def get(self, step: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if self.last is not None and step <= self.last:
            raise ValueError(f"step {step} asked for after step {self.last}: steps must increase")
        self.last = step
        if self.next_step is None or step >= self.next_step:
            self.next_step = step
        for s in [s for s in self.pending if s < step]:  # skipped steps: their batches are dropped
            del self.pending[s]
        while self.next_step <= min(step + self.depth - 1, self.last_step):
            self.pending[self.next_step] = self.pool.apply_async(_draw, (self.rng_of, self.next_step, self.batch_size))
            self.next_step += 1
        return self.pending.pop(step).get()

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()

    def __enter__(self) -> BatchPrefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
