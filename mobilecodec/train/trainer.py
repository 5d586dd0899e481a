"""The trainer: Adam over unrolled GOPs, checkpoints, resume, TensorBoard, and DistributedDataParallel
when launched by torchrun (WORLD_SIZE > 1; gloo on CPU, nccl on GPU).

Run folder layout:
    checkpoint_XXXXXX.pt  every `checkpoint_every` steps (coding tables applied, loads anywhere)
    last.pt               the newest of those;  final.pt  at the end
    trainer_state.pt      step, optimizer state and the run's options (for --resume)
    log.jsonl, tb/        metrics (JSON lines and TensorBoard)
    rank{r}_weights.txt   (distributed runs) each rank's weights hash at the end (as final.pt holds them)
Randomness is a function of (seed, rank, step): the data sample and the quantization noise of
step s are seeded from it, so a resumed run repeats an uninterrupted one exactly (on CPU).

Longer than 400 lines on purpose, for now: running trainings import it, and the options, the run
files and the loop change together; the seam for a split is the run folder (`save_run`,
`read_state`, `_Logger`) versus the loop (`train`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mobilecodec.checkpoint import read_run_state
from mobilecodec.errors import CheckpointError, InputError, MobileCodecError
from mobilecodec.train.stages import StageConfig, get_stage

STATE_FORMAT = "mobilecodec-trainer-state"
STATE_VERSION = 1
STATE_FILE = "trainer_state.pt"


def network_names(patterns: tuple[str, ...] | list[str], networks: tuple[str, ...], verb: str) -> tuple[str, ...]:
    """The networks that `patterns` name, each a network's name or a shell-style pattern ('i_*': the
    I-frame codec), in `networks`' order (a model's own: 'r_*' of a model without r_predictor names
    the others); InputError naming a pattern that matches none."""
    import fnmatch

    chosen: set[str] = set()
    for p in patterns:
        hits = [n for n in networks if fnmatch.fnmatchcase(n, p)]
        if not hits:
            raise InputError(f"cannot {verb} {p!r}; networks: {', '.join(networks)}")
        chosen.update(hits)
    return tuple(n for n in networks if n in chosen)


@dataclass
class TrainOptions:
    """Everything a training run needs; saved in trainer_state.pt so --resume continues it."""

    run_dir: str
    data: list[str]
    beta: float
    stage: StageConfig = field(default_factory=lambda: get_stage(1))
    config: str = "tiny"
    seed: int = 0
    checkpoint_every: int = 1000
    init: str | None = None
    # Top-level networks of the model re-initialised after loading `init` (VideoCodec.reinit),
    # e.g. the P-frame motion networks when starting from an I-frame-only phase.
    reinit: tuple[str, ...] = ()
    # Sender-side motion hint of the model (CodecConfig.motion_hint); None keeps the config's or
    # the init checkpoint's. It changes no weights, so it may differ from the init checkpoint's.
    motion_hint: str | None = None
    # Search range of the sender's block matching (CodecConfig.motion_search_radius); None keeps
    # the config's or the init checkpoint's. Like the hint, it changes no weights.
    motion_search_radius: int | None = None
    # Top-level networks not trained (no gradient, not in the optimizer), e.g. the I-frame codec
    # while fresh P-frame networks learn on top of it.
    freeze: tuple[str, ...] = ()
    buffering: str | None = None
    warp: str | None = None
    device: str = "auto"  # per invocation, like threads and data_workers (from_dict resets them)
    max_frames: int | None = None
    log_every: int = 10
    progress: bool = True
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    augment: bool = False  # flips and 2x downscales of video GOPs (TrainingData)
    allow_held_out: bool = False  # permit training on the held-out evaluation clip
    # Per invocation (not run-defining): stop at a checkpoint after this many steps / seconds.
    stop_after_steps: int | None = None
    stop_after_seconds: float | None = None
    keep_checkpoints: int | None = None  # keep only the newest N checkpoint_XXXXXX.pt (None: all)
    # Per invocation: channels_last weights and frames (1.26x steps/s on a 2-core AMD EPYC, fp32,
    # benchmarks/train_speed.py); bf16 autocast of the networks (1.46x alone, 1.77x with
    # channels_last, only on CPUs with native bf16) stays opt-in until its effect on RD is measured.
    channels_last: bool = True
    bf16: bool = False
    # Per invocation: processes drawing the next steps' batches ahead (prefetch.py); 0 draws each
    # batch in the training loop. The batches are the same either way.
    data_workers: int = 0

    def validate(self) -> None:
        from mobilecodec.models.codec import VideoCodec

        network_names(self.freeze, VideoCodec.NETWORKS, "freeze")
        network_names(self.reinit, VideoCodec.REINIT_NETWORKS, "re-initialise")
        if self.reinit and not self.init:
            raise InputError("re-initialising networks needs an init checkpoint (--init)")
        if not 0 < self.beta < math.inf:
            raise InputError(f"beta must be positive and finite, got {self.beta}")
        if not 0 <= self.seed < 2**64:  # numpy's SeedSequence and torch.manual_seed take no other
            raise InputError(f"--seed must be in 0..2^64-1, got {self.seed}")
        if self.checkpoint_every < 1:
            raise InputError(f"--checkpoint-every must be >= 1, got {self.checkpoint_every}")
        if self.data_workers < 0:
            raise InputError(f"--data-workers must be >= 0, got {self.data_workers}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise InputError(f"device must be auto, cpu or cuda, got {self.device!r}")
        self.stage.validate()
        radius, crop = self.motion_search_radius, max(self.stage.crop)
        if radius is not None and radius > crop:  # no block moves further within a crop; the search's
            # memory grows with the radius (a huge one exhausted the machine)
            raise InputError(f"--motion-search-radius {radius} is larger than the crop ({crop} pixels); "
                             f"use at most {crop}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stage"] = self.stage.to_dict()
        return d

    @staticmethod
    def from_dict(d: dict) -> TrainOptions:
        d = dict(d)
        d["stage"] = StageConfig.from_dict(d["stage"])
        d["data"] = list(d["data"])
        d["stop_after_steps"] = d["stop_after_seconds"] = None  # never carried over to a resume
        # nor is what suited the machine that started the run: a GPU run resumed on a CPU machine
        # asked for CUDA, and its worker count spawned as many processes on 2 cores
        d["device"], d["data_workers"], d["threads"] = "auto", 0, None
        d.setdefault("channels_last", True)
        d.setdefault("bf16", False)
        d["reinit"] = tuple(d.get("reinit", ()))
        d.setdefault("motion_hint", None)
        d.setdefault("motion_search_radius", None)
        d["freeze"] = tuple(d.get("freeze", ()))
        return TrainOptions(**d)


# --- distributed helpers -------------------------------------------------------------------

@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size from the torchrun environment (a single process without it)."""
    return DistInfo(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                    int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda was given but no CUDA device is available")
        torch.cuda.set_device(dist.local_rank)
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def _barrier(dist: DistInfo) -> None:
    if dist.enabled:
        torch.distributed.barrier()


def _shared_data(make_data: Callable[[], Any], dist: DistInfo) -> Any:
    """The training data, built once: rank 0 decodes the videos into the cache, runs the held-out check
    and scans septuplet folders, then sends it to the other ranks (it pickles as references to the
    cached clips and checked folders). An error on rank 0 ends every rank with its message."""
    if not dist.enabled:
        return make_data()
    box: list[Any] = [None]
    if dist.is_main:
        try:
            box[0] = make_data()
        except Exception as exc:  # sent on, then raised here too
            box[0] = exc
    torch.distributed.broadcast_object_list(box, src=0)
    if isinstance(box[0], MobileCodecError):  # the project's one-line errors, on every rank
        raise box[0]
    if isinstance(box[0], Exception):
        if dist.is_main:
            raise box[0]
        raise RuntimeError(f"rank 0 could not build the training data: {box[0]}")
    return box[0]


def _step_seeds(seed: int, rank: int, step: int) -> tuple[np.random.Generator, int]:
    """(numpy generator for data sampling, torch seed for quantization noise) of one step."""
    ss = np.random.SeedSequence([seed, rank, step])
    torch_seed = int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return np.random.default_rng(ss), torch_seed


def step_rng(seed: int, rank: int, step: int) -> np.random.Generator:
    """The data-sampling generator of one step (what `_step_seeds` gives the loop)."""
    return _step_seeds(seed, rank, step)[0]


# --- model construction and checkpoints --------------------------------------------------

def build_model(opts: TrainOptions):
    """A fresh VideoCodec (seeded) or the one in `opts.init`; checks that flags agree with it."""
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    if opts.init:
        from mobilecodec.checkpoint import load_checkpoint

        model, _ = load_checkpoint(opts.init)
        cfg = model.cfg
        if opts.config and opts.config != cfg.name:
            raise InputError(f"--init {opts.init} is config {cfg.name!r}, but --config {opts.config!r} was given")
        if opts.buffering and opts.buffering != cfg.buffering:
            raise InputError(f"--init {opts.init} uses buffering {cfg.buffering!r}, not {opts.buffering!r}")
        if opts.warp and opts.warp != cfg.warp.mode:
            raise InputError(f"--init {opts.init} uses warp {cfg.warp.mode!r}, not {opts.warp!r}")
        sender = {k: v for k, v in (("motion_hint", opts.motion_hint),
                                    ("motion_search_radius", opts.motion_search_radius)) if v}
        if any(getattr(cfg, k) != v for k, v in sender.items()):
            try:
                model.cfg = cfg.replace(**sender)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        if opts.reinit:
            torch.manual_seed(opts.seed)
            model.reinit(network_names(opts.reinit, model.networks(VideoCodec.REINIT_NETWORKS), "re-initialise"))
        return model
    overrides: dict[str, Any] = {}
    if opts.buffering:
        overrides["buffering"] = opts.buffering
    if opts.warp:
        overrides["warp_mode"] = opts.warp
    if opts.motion_hint:
        overrides["motion_hint"] = opts.motion_hint
    if opts.motion_search_radius:
        overrides["motion_search_radius"] = opts.motion_search_radius
    try:
        cfg = get_config(opts.config, **overrides)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    torch.manual_seed(opts.seed)
    return VideoCodec(cfg)


def coding_copy(model):
    """A CPU copy of `model` with entropy-coding tables (update()), leaving `model` untouched."""
    m = copy.deepcopy(model).cpu().eval().to(memory_format=torch.contiguous_format)
    m.update()
    return m


def _meta(opts: TrainOptions, step: int, dist: DistInfo, final: bool, held: bool) -> dict:
    return {"trained": True, "stage": opts.stage.stage, "step": step, "seed": opts.seed, "data": list(opts.data),
            "train": opts.stage.to_dict(), "world_size": dist.world_size, "final": final,
            "trained_on_held_out": held}


def trained_on_held_out(opts: TrainOptions, resumed: dict | None = None) -> bool:
    """Whether a run's weights saw the held-out clip: the resumed checkpoint's record (`resumed`, its
    dict), else its own data (only possible with --allow-held-out) or the --init checkpoint's
    record. Taken once, when the run starts; every checkpoint carries it, so that eval, PTQ and
    check-int8 can say their figures on that clip are not held-out ones."""
    from mobilecodec.checkpoint import read_checkpoint, resolve_checkpoint
    from mobilecodec.train.data import is_held_out

    recorded = (resumed or {}).get("meta") or {}
    if "trained_on_held_out" in recorded:
        return bool(recorded["trained_on_held_out"])
    if opts.allow_held_out and any(is_held_out(d) for d in opts.data):
        return True
    init = resolve_checkpoint(opts.init) if opts.init else None
    if init is None or (resumed is not None and not init.is_file()):  # a resumed older run whose init moved
        return False
    return bool((read_checkpoint(init).get("meta") or {}).get("trained_on_held_out"))


def save_run(run: Path, model, optimizer, opts: TrainOptions, step: int, dist: DistInfo,
             final: bool = False, coded=None, held: bool = False) -> Path:
    """Write checkpoint_XXXXXX.pt, last.pt (and final.pt) then trainer_state.pt (rank 0 only);
    `coded` is `coding_copy(model)` where the caller has made it already; `held`: the run's
    `trained_on_held_out`."""
    from mobilecodec.checkpoint import save_checkpoint, save_torch_file

    m = coding_copy(model) if coded is None else coded
    meta = _meta(opts, step, dist, final, held)
    path = save_checkpoint(run / f"checkpoint_{step:06d}.pt", m, beta=opts.beta, meta=meta)
    save_checkpoint(run / "last.pt", m, beta=opts.beta, meta=meta)
    if final:
        path = save_checkpoint(run / "final.pt", m, beta=opts.beta, meta=meta)
    state = {"format": STATE_FORMAT, "version": STATE_VERSION, "step": step,
             "optimizer": optimizer.state_dict(), "options": opts.to_dict()}
    save_torch_file(run / STATE_FILE, state)
    if opts.keep_checkpoints:
        for old in sorted(run.glob("checkpoint_*.pt"))[:-opts.keep_checkpoints]:
            old.unlink()
    return path


def read_state(run_dir: str | os.PathLike) -> dict:
    """The trainer_state.pt of a run folder (validated)."""
    _refuse_uncommitted(Path(run_dir))
    return read_run_state(run_dir, STATE_FILE, STATE_FORMAT, STATE_VERSION, "trainer")


def _refuse_uncommitted(run: Path) -> None:
    """InputError for a folder with checkpoints but no trainer state: `save_run` writes the state last,
    so a first save cut short left one that a fresh run ("already holds a training run") and --resume
    ("nothing to resume") each sent to the other (training audit, session 39)."""
    if (run / "last.pt").exists() and not (run / STATE_FILE).exists():
        raise InputError(f"{run} holds checkpoints but no {STATE_FILE} (its first save was cut short?), so it "
                         "can neither be resumed nor trained afresh in place: move it away (a recipe's phase then "
                         f"trains again), or start a plain run from its weights with --init {run / 'last.pt'} and "
                         "another -o")


def load_run_options(run_dir: str | os.PathLike) -> TrainOptions:
    """The options a run was started with (from its trainer_state.pt)."""
    return TrainOptions.from_dict(read_state(run_dir)["options"])


def resume_checkpoint(run_dir: str | os.PathLike, step: int | None = None) -> Path:
    """The checkpoint a --resume of the run continues from: the one at `step`, by default its
    trainer state's step; CheckpointError where it is missing."""
    run = Path(run_dir)
    step = int(read_state(run)["step"]) if step is None else step
    ckpt = run / f"checkpoint_{step:06d}.pt"
    if not ckpt.is_file():
        raise CheckpointError(f"{run}: trainer state is at step {step} but {ckpt.name} is missing")
    return ckpt


def run_config(run_dir: str | os.PathLike):
    """The CodecConfig the run trains (from the checkpoint a --resume continues from): what its
    options left at None (--motion-hint, --buffering, ...) resolved to, from the config or --init."""
    from mobilecodec.checkpoint import checkpoint_config, read_checkpoint

    ckpt = resume_checkpoint(run_dir)
    return checkpoint_config(read_checkpoint(ckpt), f"checkpoint {ckpt}")


# --- logging ---------------------------------------------------------------------------------

def _is_training_log(path: Path) -> bool:
    """True when `path` is missing, empty or starts as `_Logger.log` writes (`{"step": `): what a run
    interrupted before its first checkpoint leaves, which a fresh run may replace."""
    try:
        with open(path, errors="replace") as f:
            first = f.readline()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return not first.strip() or first.startswith('{"step": ')  # _Logger.log's lines, a torn one too


class _Logger:
    """JSON lines (always) and TensorBoard (when importable) on rank 0. A fresh run starts both
    empty (a folder left by a run interrupted before its first checkpoint may hold old ones); a run
    resumed at `resume_step` drops what was logged after it (repeated now)."""

    def __init__(self, run: Path, enabled: bool, resume_step: int | None = None) -> None:
        self.enabled = enabled
        self.tb = None
        self.jsonl = run / "log.jsonl"
        if enabled:
            if resume_step is None:
                self.jsonl.unlink(missing_ok=True)
                for old in (run / "tb").glob("events.out.tfevents.*"):
                    old.unlink()
            else:
                self.truncate(resume_step)
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step: TensorBoard hides the earlier event files' steps from it on
                self.tb = SummaryWriter(str(run / "tb"),
                                        purge_step=None if resume_step is None else resume_step + 1)
            except ImportError:
                print("note: tensorboard is not installed; metrics go to log.jsonl only", file=sys.stderr)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.tb is not None:
            for k, v in scalars.items():
                if math.isfinite(v):
                    self.tb.add_scalar(f"train/{k}", v, step)
        from mobilecodec.fsutil import json_finite

        with open(self.jsonl, "a") as f:  # strict JSON lines: an inf grad norm is null
            f.write(json.dumps(json_finite({"step": step, **scalars}), allow_nan=False) + "\n")

    def truncate(self, step: int) -> None:
        """Drop log lines past `step` (written after the checkpoint a resumed run restarts from),
        and lines that do not parse (the torn last line of a killed process or a full disk)."""
        if self.jsonl.is_file():
            from mobilecodec.fsutil import write_bytes_atomic

            keep = []
            for line in self.jsonl.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                    if record["step"] <= step:
                        keep.append(line + "\n")
                except (ValueError, TypeError, KeyError):
                    continue
            write_bytes_atomic(self.jsonl, "".join(keep).encode())

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# --- the training loop -------------------------------------------------------------------

def train(opts: TrainOptions, resume: bool = False) -> dict:
    """Train (or resume) the run described by `opts`; returns a summary dict (rank 0's view).

    Under torchrun (WORLD_SIZE > 1) every process calls this: the model is wrapped in
    DistributedDataParallel, each rank samples its own data (seeded with its rank), and rank 0
    writes checkpoints, logs and the progress bar. `stage.batch_size` is per process. A single
    process holds the run folder (`fsutil.run_lock`): a second train or --resume of it is refused
    while this one runs (it interleaved its checkpoints and logs with this one's)."""
    from mobilecodec.fsutil import run_lock

    opts.validate()
    if dist_info().world_size > 1:  # torchrun's ranks share the folder by design; rank 0 writes
        return _train(opts, resume)
    with run_lock(opts.run_dir, "training run"):
        return _train(opts, resume)


def _train(opts: TrainOptions, resume: bool) -> dict:
    from mobilecodec.progress import progress_bar
    from mobilecodec.train.data import TrainingData, gops_to_tensor
    from mobilecodec.train.losses import GopLoss, summarize

    opts.validate()
    dist = dist_info()
    run = Path(opts.run_dir)
    st = opts.stage

    start_step = 0
    state = None
    _refuse_uncommitted(run)
    if resume:
        state = read_state(run)
        start_step = int(state["step"])
        if st.steps < start_step:  # it would train nothing and rewrite final.pt at the old step
            raise InputError(f"{run} is at step {start_step}, past --steps {st.steps}; "
                             f"give --steps {start_step} or more")
        ckpt = resume_checkpoint(run, start_step)
        from mobilecodec.checkpoint import read_checkpoint

        was = ((read_checkpoint(ckpt).get("meta") or {}).get("world_size"))
        if was is not None and was != dist.world_size:  # the batch and each rank's data stream depend on it
            raise InputError(f"{run} trained on {was} process{'es' if was > 1 else ''} and this resume runs "
                             f"{dist.world_size}: that changes its batch and data; resume it with "
                             + (f"torchrun --nproc_per_node {was}" if was > 1 else "one process (no torchrun)"))
    elif (run / STATE_FILE).exists() or (run / "last.pt").exists():
        raise InputError(f"{run} already holds a training run; use --resume to continue it or choose another -o")
    elif not _is_training_log(run / "log.jsonl"):  # a fresh run starts its log (and tb/) afresh
        raise InputError(f"{run / 'log.jsonl'} is not a training log; a new run would replace it: choose another -o")

    device = _resolve_device(opts.device, dist)
    # Deterministic kernels where torch has them (warn only where it has not): with the per-step
    # seeds this makes runs repeatable. Restored at the end because the setting is process-wide.
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if opts.threads:
        # On a shared CPU, fewer intra-op threads avoid OpenMP oversubscription (measured: 2 threads
        # at load ~8 on 2 cores ran ~10x slower than 1 thread).
        torch.set_num_threads(opts.threads)
    if dist.enabled and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    prefetch = None
    try:
        data = _shared_data(partial(TrainingData, opts.data, st.gop + st.rollout, st.crop, max_frames=opts.max_frames,
                                    augment=opts.augment, allow_held_out=opts.allow_held_out), dist)
        if opts.data_workers:  # the workers get a copy of the same TrainingData
            from mobilecodec.train.prefetch import BatchPrefetcher

            prefetch = BatchPrefetcher(data, partial(step_rng, opts.seed, dist.rank), st.batch_size,
                                       opts.data_workers, last_step=st.steps)

        if resume:
            from mobilecodec.checkpoint import load_checkpoint

            model, resumed = load_checkpoint(ckpt)
            held = trained_on_held_out(opts, resumed)
        else:
            model = build_model(opts)
            held = trained_on_held_out(opts)
        model.to(device).train()
        if opts.channels_last:
            model.to(memory_format=torch.channels_last)
        for name in network_names(opts.freeze, model.networks(), "freeze"):  # trained by an earlier phase
            getattr(model, name).requires_grad_(False)
        iframes_only = st.gop == 1  # the rollout frames are coded after the GOP's: none with one frame
        if not any(p.requires_grad for n in model.networks(model.IFRAME_NETWORKS if iframes_only else model.NETWORKS)
                   for p in getattr(model, n).parameters()):
            raise InputError(f"--freeze {' '.join(opts.freeze)} leaves nothing to train"
                             + (": a GOP of one frame trains the i_* networks alone" if iframes_only else ""))
        if dist.is_main:  # only once the data, the model and the options are known to be good
            run.mkdir(parents=True, exist_ok=True)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=st.lr)
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            for group in optimizer.param_groups:
                group["lr"] = st.lr
        gop_loss = GopLoss(model, opts.beta, st)
        loss_module = gop_loss  # DDP wraps it below; the step goes to the module itself
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            gop_loss = DDP(gop_loss, device_ids=[device.index] if device.type == "cuda" else None,
                           broadcast_buffers=False, find_unused_parameters=st.gop < 2)

        logger = _Logger(run, dist.is_main, start_step if resume else None)
        summary: dict[str, Any] = {}
        ema: dict[str, float] = {}
        coded: dict[str, Any] = {}  # the last logged step's coded columns, for the progress bar
        t0 = t_first = time.perf_counter()
        bar = progress_bar(total=st.steps, initial=start_step, desc=f"train stage {st.stage}", unit="step",
                           enabled=opts.progress and dist.is_main)
        step = start_step
        interrupted = False
        try:
            for step in range(start_step + 1, st.steps + 1):
                rng, torch_seed = _step_seeds(opts.seed, dist.rank, step)
                torch.manual_seed(torch_seed)
                lr = st.lr_at(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss_module.step = step
                if prefetch is None:
                    frames = data.batch(rng, st.batch_size, device)
                else:
                    frames = gops_to_tensor(*prefetch.get(step), device)
                if opts.channels_last:
                    frames = torch.stack([f.contiguous(memory_format=torch.channels_last) for f in frames])
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16):
                    loss, stats = gop_loss(frames)
                if not torch.isfinite(loss):
                    raise InputError(f"training diverged at step {step} (loss {float(loss)}); "
                                     "lower --lr or change --beta")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), st.grad_clip if st.grad_clip > 0
                                                           else float("inf"))
                scalars = {"loss": float(loss.detach()), **summarize(stats), "grad_norm": float(grad_norm), "lr": lr}
                logged = (step % opts.log_every == 0 or step == st.steps) and dist.is_main  # only rank 0 logs
                if logged:  # before the update: the row's coded and noisy figures describe one model
                    scalars.update(coded_scalars(loss_module, frames))
                optimizer.step()

                for k in ("loss", "bpp", "psnr"):
                    ema[k] = scalars[k] if k not in ema else 0.9 * ema[k] + 0.1 * scalars[k]
                if logged:
                    logger.log(step, scalars)
                    coded = scalars
                bar.update(1)
                bar.set_postfix(training_postfix(ema, coded))
                summary = scalars
                if step == start_step + 1:  # its warm-up (allocation, first kernels) is not the steady rate
                    t_first = time.perf_counter()
                if step % opts.checkpoint_every == 0 and step != st.steps and dist.is_main:
                    save_run(run, model, optimizer, opts, step, dist, held=held)
                if step != st.steps and _should_stop(opts, step - start_step, time.perf_counter() - t0):
                    interrupted = True  # its checkpoint is written below, from the one coding copy
                    break
        finally:
            bar.close()
            logger.close()
        t_end = time.perf_counter()
        seconds = t_end - t0
        steps_done = step - start_step
        final_path = run / ("last.pt" if interrupted else "final.pt")
        # The hash of what final_path holds (coding tables included; the training model has none,
        # or a resumed one stale ones), so a resumed run reports what an uninterrupted one does.
        saved = coding_copy(model)
        weights_hash = saved.weights_hash().hex()
        if not interrupted:  # a finished run resumed: nothing new to write
            if dist.is_main and (steps_done or not (run / "final.pt").is_file()):
                save_run(run, model, optimizer, opts, step, dist, final=True, coded=saved, held=held)
        elif dist.is_main and step % opts.checkpoint_every:  # a stop between checkpoints: resumable here
            save_run(run, model, optimizer, opts, step, dist, coded=saved, held=held)
        if dist.enabled:
            from mobilecodec.fsutil import write_bytes_atomic

            write_bytes_atomic(run / f"rank{dist.rank}_weights.txt", (weights_hash + "\n").encode())
        _barrier(dist)
    finally:
        if prefetch is not None:
            prefetch.close()
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return {"run_dir": str(run), "config": model.cfg.name, "stage": st.stage, "beta": opts.beta,
            "start_step": start_step, "step": step, "steps_run": steps_done, "seconds": seconds,
            "steps_per_s": steps_done / seconds if seconds > 0 and steps_done else None,
            # the same after the first step (its warm-up weighs on a short run's figure), and that step's time
            "steps_per_s_after_first": ((steps_done - 1) / (t_end - t_first)
                                        if steps_done > 1 and t_end > t_first else None),
            "first_step_seconds": t_first - t0 if steps_done else None,
            "world_size": dist.world_size, "checkpoint": str(final_path),
            "weights_hash": weights_hash, "last": summary, "options": opts.to_dict(),
            "interrupted": interrupted}


def coded_scalars(loss_module, frames) -> dict[str, float]:
    """The batch's bpp and PSNR as the codec codes it, logged beside training's own: the model in eval
    mode (latents rounded about their means, no noise), no gradient. Training's rate prices noisy
    latents and overstates the coded rate several times on P-frames (`scripts/rate_gap.py`)."""
    from mobilecodec.train.losses import summarize

    model = loss_module.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():  # the same frames as the step's forward
            _, stats = loss_module(frames, rollout_depth=loss_module.last_rollout_depth)
    finally:
        model.train(was_training)
    return {f"coded_{k}": v for k, v in summarize(stats).items() if k.startswith(("bpp", "psnr"))}


def training_postfix(ema: dict[str, float], coded: dict[str, Any], noisy: bool = True) -> dict[str, str]:
    """The progress bar's fields: smoothed loss and PSNR, training's own bpp, named `noisy_bpp` when it
    prices noisy latents (it overstates the coded rate, see `coded_scalars`), and, once a step was
    logged, its `coded_bpp`."""
    fields = {"loss": f"{ema['loss']:.5f}", "noisy_bpp" if noisy else "bpp": f"{ema['bpp']:.3f}"}
    if "coded_bpp" in coded:
        fields["coded_bpp"] = f"{coded['coded_bpp']:.3f}"
    fields["psnr"] = f"{ema['psnr']:.2f}"
    return fields


def _should_stop(opts: TrainOptions, steps_run: int, seconds: float) -> bool:
    """True when this invocation's step or time budget is spent (the run then checkpoints and
    stops; `--resume` continues it). DDP ranks agree because rank 0's clock decides."""
    if opts.stop_after_steps is not None and steps_run >= opts.stop_after_steps:
        return True
    if opts.stop_after_seconds is None:
        return False
    over = torch.tensor([1.0 if seconds >= opts.stop_after_seconds else 0.0])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if torch.distributed.get_backend() == "nccl":  # NCCL carries CUDA tensors only
            over = over.cuda()
        torch.distributed.broadcast(over, 0)
    return bool(over.item())
