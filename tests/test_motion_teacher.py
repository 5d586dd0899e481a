"""The block-matching motion teacher and the re-initialisation of P-frame networks: the teacher
finds motions we put into real images, its loss has the documented dead zone, and a re-initialised
motion path starts with latents that survive rounding and a predictor that keeps the buffered flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mobilecodec.errors import InputError
from mobilecodec.models.yuv import pack_yuv
from mobilecodec.models.motion_search import block_match
from mobilecodec.train.motion_teacher import teacher_loss


def _astronaut_pair(dy: int, dx: int, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Two packed crops of scikit-image's astronaut: x(p) = ref(p + (dy, dx)) exactly."""
    from mobilecodec.train.rgb import rgb_to_yuv420
    from mobilecodec.train.stills import find_stills

    path = next(p for p in find_stills() if p.stem == "astronaut")
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"))
    y, u, v = rgb_to_yuv420(rgb)
    top, left = 180, 160  # a textured region (face, suit)

    def crop(oy: int, ox: int) -> torch.Tensor:
        yy = y[top + oy: top + oy + size, left + ox: left + ox + size]
        uv = np.stack([u[(top + oy) // 2:(top + oy) // 2 + size // 2, (left + ox) // 2:(left + ox) // 2 + size // 2],
                       v[(top + oy) // 2:(top + oy) // 2 + size // 2, (left + ox) // 2:(left + ox) // 2 + size // 2]])
        return pack_yuv(torch.from_numpy(yy.copy()).float()[None, None] / 255,
                        torch.from_numpy(uv.copy()).float()[None] / 255)

    return crop(0, 0), crop(dy, dx)


@pytest.mark.parametrize("dy,dx", [(0, 3), (-2, 5), (4, -1)])
def test_block_match_finds_an_integer_translation_of_a_real_image(dy, dx):
    ref, x = _astronaut_pair(dy, dx)
    flow, confident = block_match(ref, x, block=8, radius=6)
    assert flow.shape == (1, 2, 16, 16) and confident.shape == (1, 1, 16, 16)
    c = confident[0, 0]
    assert c.float().mean() > 0.5  # most blocks of the face and suit are textured
    # channel 0 = dx, 1 = dy: x(p) = ref(p + (dy, dx)) is the warp's convention
    # blocks on the right/bottom edge see replicated borders, so judge the interior blocks
    inner = c[1:-1, 1:-1]
    assert (flow[0, 0, 1:-1, 1:-1][inner] == dx).float().mean() > 0.95
    assert (flow[0, 1, 1:-1, 1:-1][inner] == dy).float().mean() > 0.95


@pytest.mark.parametrize("dy,dx", [(19, -23), (-30, 7), (2, 29)])
def test_coarse_to_fine_search_finds_large_translations_of_a_real_image(dy, dx):
    """Radius 32 (coarse to fine) recovers translations far beyond the exhaustive range: every
    block whose match lies inside the reference crop, bar a few flat ones, gets the exact vector."""
    ref, x = _astronaut_pair(dy, dx)
    flow, confident = block_match(ref, x, block=8, radius=32)
    assert flow.shape == (1, 2, 16, 16) and flow.abs().max() <= 32
    rows = torch.arange(16) * 8
    inside_y = (rows + dy >= 0) & (rows + 8 + dy <= 128)
    inside_x = (rows + dx >= 0) & (rows + 8 + dx <= 128)
    judged = inside_y[:, None] & inside_x[None, :] & confident[0, 0]
    assert judged.sum() >= 40
    exact = (flow[0, 0][judged] == dx) & (flow[0, 1][judged] == dy)
    assert exact.float().mean() > 0.9


def test_coarse_to_fine_search_predicts_real_motion_nearly_as_well_as_exhaustive():
    """On bikes (real camera and object motion, vectors up to ~30 px), the coarse-to-fine radius-32
    search warps the reference to within 1.5 dB PSNR-YUV of the exhaustive radius-32 search
    (measured on these three crops: 0.66 dB worse at most, and 0.1 dB better on one: its SAD
    window differs from the exhaustive one), and far better than radius 6 (by 3.9-17 dB)."""
    from mobilecodec.io.samples import sample_clip
    from mobilecodec.models.configs import get_config
    from mobilecodec.models.motion_search import exhaustive_search
    from mobilecodec.models.warp import warp_frame
    from mobilecodec.models.yuv import read_packed_frames
    from mobilecodec.train.losses import yuv_mse

    frames = read_packed_frames(sample_clip("bikes"), 3)
    warp = get_config("tiny").warp
    for y0, x0 in ((40, 80), (60, 120), (20, 200)):  # packed coordinates: 128x256 luma crops
        ref, x = frames[1][..., y0:y0 + 64, x0:x0 + 128], frames[2][..., y0:y0 + 64, x0:x0 + 128]

        def psnr(flow: torch.Tensor) -> float:
            return float(-10 * torch.log10(yuv_mse(warp_frame(ref, flow, warp), x)))

        exhaustive = psnr(exhaustive_search(ref, x, 8, 32))
        coarse_to_fine = psnr(block_match(ref, x, 8, 32)[0])
        near = psnr(block_match(ref, x, 8, 6)[0])
        assert coarse_to_fine >= exhaustive - 1.5, (y0, x0, coarse_to_fine, exhaustive)
        assert coarse_to_fine > near + 2.0, (y0, x0, coarse_to_fine, near)


def test_block_match_follows_synthetic_still_motion():
    from mobilecodec.train.stills import StillSource

    src = StillSource()
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(30):
        y, uv, motion = src.sample_with_motion(rng, 2, (128, 128))
        if abs(motion.zoom) > 0.005 or max(abs(v) for v in motion.velocity) < 1.0:
            continue
        x = pack_yuv(torch.from_numpy(y).float()[:, None] / 255, torch.from_numpy(uv.copy()).float() / 255)
        flow, confident = block_match(x[:1], x[1:], 8, 6)
        c = confident[0, 0]
        if c.sum() < 20:
            continue
        # integer search of a sub-pixel motion: the median vector is the motion rounded (+-1)
        assert abs(float(flow[0, 0][c].median()) - motion.velocity[1]) <= 1.0
        assert abs(float(flow[0, 1][c].median()) - motion.velocity[0]) <= 1.0
        checked += 1
    assert checked >= 3


def test_block_match_gives_no_signal_on_a_flat_frame():
    flat = torch.full((1, 6, 32, 32), 0.5)
    flow, confident = block_match(flat, flat, 8, 4)
    assert not confident.any() and (flow == 0).all()  # ties go to the zero vector


def test_confident_only_hint_sends_no_correction_where_the_match_is_arbitrary():
    """motion_hint_confident_only: blocks whose best vector does not beat zero motion get a zero
    hint (no correction of the predicted flow); matched blocks get vectors - predicted flow."""
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    ref, x = _astronaut_pair(3, -5)
    x = x.clone()
    x[..., :, 32:] = 0.5  # the right half flat: no vector beats zero motion there
    ref = ref.clone()
    ref[..., :, 32:] = 0.5
    model = VideoCodec(get_config("tiny", motion_search_radius=6))
    flow_pred = torch.full((1, 2, 16, 16), 1.25)
    vectors, confident = model.motion_search(x, ref)
    assert confident[..., :8].float().mean() > 0.5 and not confident[..., 9:].any()
    plain = model.motion_hint(x, ref, flow_pred)
    assert torch.equal(plain, vectors - flow_pred)
    model.cfg = model.cfg.replace(motion_hint_confident_only=True)
    masked = model.motion_hint(x, ref, flow_pred)
    assert torch.equal(masked, torch.where(confident, vectors - flow_pred, torch.zeros_like(flow_pred)))
    assert (masked[..., 9:] == 0).all() and (plain[..., 9:] == -1.25).all()


def test_teacher_loss_hand_values():
    teacher = torch.zeros(2, 2, 2, 2)
    confident = torch.zeros(2, 1, 2, 2, dtype=torch.bool)
    confident[0, 0, 0, 0] = confident[0, 0, 1, 1] = True
    flow = torch.zeros(2, 2, 2, 2)
    flow[0, 0, 0, 0] = 1.5  # 1.0 beyond the 0.5 dead zone
    flow[0, 1, 0, 0] = -0.25  # inside the dead zone
    flow[0, 0, 0, 1] = 9.0  # not a confident block
    flow[1] = 3.0  # second sample has no confident block
    loss = teacher_loss(flow, teacher, confident)
    assert loss.tolist() == [0.5, 0.0]


def test_reinit_restarts_only_the_named_networks(carphone):
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.models.yuv import read_packed_frames

    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.cat(read_packed_frames(carphone, 2))
    fp = torch.zeros(1, 2, x.shape[2] // 4, x.shape[3] // 4)
    with torch.no_grad():
        std_default = float(model.m_analysis(x[1:], x[:1], fp).std())
        model.reinit(("motion_predictor", "m_analysis", "m_synthesis"))
        std_reinit = float(model.m_analysis(x[1:], x[:1], fp).std())
        flow = torch.randn(1, 2, *fp.shape[2:])
        assert torch.equal(model.motion_predictor(flow), flow)  # zero correction: keeps the buffered flow
    # PyTorch's default init leaves latents far inside the rounding dead zone; He init does not
    assert std_default < 0.1 < std_reinit
    after = model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"motion_predictor", "m_analysis", "m_synthesis"}
    with pytest.raises(InputError, match="i_analysis"):
        model.reinit(("i_analysis",))


def test_motion_hint_is_block_matching_minus_the_predicted_flow():
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config

    ref, x = _astronaut_pair(2, -3)
    model = VideoCodec(get_config("tiny"))
    assert model.cfg.motion_hint == "block_match"
    flow_pred = torch.full((1, 2, 16, 16), 0.75)
    hint = model.motion_hint(x, ref, flow_pred)
    vectors, _ = block_match(ref, x, 8, model.cfg.motion_search_radius)
    assert torch.equal(hint, vectors - 0.75)
    # most interior blocks see the true motion minus the prediction
    assert (hint[0, 0, 1:-1, 1:-1] == -3.75).float().mean() > 0.9
    plain = VideoCodec(get_config("tiny", motion_hint="none"))
    assert plain.motion_hint(x, ref, flow_pred) is flow_pred


def test_motion_hint_needs_a_buffered_frame():
    from mobilecodec.models.configs import get_config

    with pytest.raises(ValueError, match="buffered frame"):
        get_config("tiny", buffering="implicit", motion_hint="block_match")
    # the registered default turns off where there is no frame to match against
    assert get_config("tiny", buffering="implicit").motion_hint == "none"
    assert get_config("tiny", warp_mode="none").motion_hint == "none"
    assert get_config("tiny", buffering="hybrid").motion_hint == "block_match"
    with pytest.raises(ValueError, match="motion_hint must be one of"):
        get_config("tiny", motion_hint="optical_flow")


def test_noisy_synthesis_feeds_the_noisy_latent_to_the_synthesis(carphone):
    """With straight-through rounding the synthesis input is deterministic (only the rate sees
    noise; the hyper-latents are rounded here by putting the priors in eval mode); with
    noisy_synthesis the reconstruction changes with the noise seed."""
    from mobilecodec.models.codec import VideoCodec
    from mobilecodec.models.configs import get_config
    from mobilecodec.models.yuv import read_packed_frames

    torch.manual_seed(0)
    model = VideoCodec(get_config("tiny")).train()
    model.reinit(("r_analysis", "r_synthesis"))
    x = torch.cat(read_packed_frames(carphone, 2))[..., :64, :64]
    buf = model.forward_iframe(x[:1])["buffer"]
    model.m_z_prior.eval()
    model.r_z_prior.eval()

    def recon(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return model.forward_pframe(x[1:], buf)["x_hat"]

    assert torch.equal(recon(1), recon(2))
    model.noisy_synthesis = ("r",)
    assert not torch.equal(recon(1), recon(2))
    model.eval()  # evaluation always rounds
    assert torch.equal(recon(1), recon(2))


def test_teacher_weight_decays_linearly_to_zero():
    from mobilecodec.train.stages import get_stage

    st = get_stage(1, flow_lambda_teacher=2e-3, teacher_steps=5)
    assert [st.teacher_weight(s) for s in (1, 2, 3, 6, 100)] == pytest.approx([2e-3, 1.6e-3, 1.2e-3, 0.0, 0.0])
    assert get_stage(1, flow_lambda_teacher=2e-3).teacher_weight(10**6) == 2e-3  # no schedule: constant
    with pytest.raises(InputError, match="teacher_steps"):
        get_stage(1, teacher_steps=0)


def test_neighbour_vectors_do_not_wrap_around():
    """The coarse-to-fine search's neighbour passes try each block's neighbour's vector; at the
    frame edge a block gets its own vector back, never the opposite edge's (hand-made grid)."""
    from mobilecodec.models.motion_kernel import neighbours

    v = np.arange(12).reshape(3, 4)
    left = np.array([[0, 0, 1, 2], [4, 4, 5, 6], [8, 8, 9, 10]])
    above = np.array([[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7]])
    assert np.array_equal(neighbours(v, 0, 1), left)  # from the left neighbour
    assert np.array_equal(neighbours(v, 1, 0), above)  # from the neighbour above
    assert np.array_equal(neighbours(v, 0, -1), [[1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11]])
    assert np.array_equal(neighbours(v, -1, 0), [[4, 5, 6, 7], [8, 9, 10, 11], [8, 9, 10, 11]])


def _brute_force_costs(ref: np.ndarray, x: np.ndarray, block: int, radius: int) -> np.ndarray:
    """Every vector's integer cost per block, written out from the definition (motion_kernel's
    docstring): 20 x SAD over the block, reference clamped to the frame, + 64 x (|dx| + |dy|);
    (K, H/B, W/B) in the order dy, then dx, ascending."""
    h, w = x.shape
    rows, cols = np.arange(h), np.arange(w)
    costs = []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = ref[np.clip(rows + dy, 0, h - 1)][:, np.clip(cols + dx, 0, w - 1)]
            sad = np.abs(x.astype(np.int64) - shifted).reshape(h // block, block, w // block, block).sum(axis=(1, 3))
            costs.append(20 * sad + block * block * (abs(dx) + abs(dy)))
    return np.stack(costs)


def test_block_costs_are_exact_integers_on_real_frames():
    """The compiled search's costs and choices equal a brute-force evaluation of the integer cost
    on real bikes frames (first minimum in search order), at the frame edges included; the
    coarse-to-fine result's cost is that of its vector and no worse than any vector within
    REFINE_RADIUS of zero (it searches those first)."""
    from mobilecodec.io.samples import sample_clip
    from mobilecodec.models import motion_kernel
    from mobilecodec.models.motion_search import REFINE_RADIUS, luma_levels
    from mobilecodec.models.yuv import read_packed_frames

    frames = read_packed_frames(sample_clip("bikes"), 2)
    ref, x = (luma_levels(f[..., 40:72, 80:128])[0] for f in frames)  # 64x96 luma
    costs = _brute_force_costs(ref, x, 8, 5)
    table = [(dx, dy) for dy in range(-5, 6) for dx in range(-5, 6)]
    first = costs.argmin(axis=0)  # numpy: the first minimum
    best, vx, vy, zero = motion_kernel.full_search(ref, x, 8, 5, threads=2)
    assert np.array_equal(best, costs.min(axis=0)) and np.array_equal(zero, costs[len(table) // 2])
    assert np.array_equal(vx, np.vectorize(lambda k: table[k][0])(first))
    assert np.array_equal(vy, np.vectorize(lambda k: table[k][1])(first))

    best, vx, vy, zero = motion_kernel.coarse_to_fine(ref, x, 8, 16, 4, REFINE_RADIUS, threads=1)
    near = _brute_force_costs(ref, x, 8, REFINE_RADIUS)
    assert (best <= near.min(axis=0)).all() and np.array_equal(zero, near[len(near) // 2])
    wide = _brute_force_costs(ref, x, 8, 16)
    own = np.take_along_axis(wide, ((vy + 16) * 33 + (vx + 16))[None], axis=0)[0]
    assert np.array_equal(best, own)


@pytest.mark.parametrize("radius", [2, 6, 8])
def test_torch_full_search_equals_the_kernel(radius):
    """The torch search a GPU trainer uses picks the numba kernel's vectors and confidence flags
    (exact integer costs, first-in-order ties) on real crops against a reference off the 8-bit grid."""
    from mobilecodec.models.motion_search import _search, full_search_torch
    from mobilecodec.train.data import TrainingData

    fr = TrainingData(["bikes", "stills"], 2, (128, 192), augment=True).batch(np.random.default_rng(radius), 6)
    ref = fr[0] + 0.02 * torch.randn(fr[0].shape, generator=torch.Generator().manual_seed(radius))
    want_flow, want_conf = _search(ref, fr[1], 8, radius, exhaustive=False)  # CPU tensors: the kernel
    flow, conf = full_search_torch(ref, fr[1], 8, radius)
    assert want_flow.abs().amax() > 0 and want_conf.any()  # real motion was found
    assert torch.equal(flow, want_flow) and torch.equal(conf, want_conf)
    with pytest.raises(ValueError, match="multiple of the block size"):
        full_search_torch(ref[..., :60], fr[1][..., :60], 16, radius)
