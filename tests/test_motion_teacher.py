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
