"""Untrained init checkpoints for an I-frame width experiment: tiny and a wider I-frame codec."""
import sys
import torch
from mobilecodec.checkpoint import save_checkpoint
from mobilecodec.models.codec import VideoCodec
from mobilecodec.models.configs import AEConfig, HyperConfig, get_config

tiny = get_config("tiny")
wide = tiny.replace(name="tiny", iframe=AEConfig(enc_channels=(64, 96, 128), enc_extra=(0, 0, 0), latent=96,
                                                   dec_channels=(96, 64, 48), dec_extra=(0, 0, 0), out_extra=2,
                                                   hyper=HyperConfig(channels=64, latent=48)))
for name, cfg in (("tiny_i", tiny), ("wide_i", wide)):
    torch.manual_seed(0)
    m = VideoCodec(cfg)
    n = sum(p.numel() for k, p in m.named_parameters() if k.startswith("i_"))
    m.update()
    save_checkpoint(f"training/exp-small/{name}_init.pt", m)
    print(name, "I-frame params", n)
