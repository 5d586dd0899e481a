"""Experiment (session 14): fine-tune tiny_b0.0064's P-frame networks with half of the still GOPs static."""
import sys
from mobilecodec.train import stills
stills.STATIC_SHARE = 0.5
from mobilecodec.cli import main
sys.exit(main(["train", "--stage", "2", "--beta", "0.0064", "--init", "mobilecodec/checkpoints/tiny_b0.0064.pt",
               "--gop", "3", "--rollout", "30", "--rollout-random", "--crop", "128x128", "--batch-size", "2",
               "--lr", "5e-5", "--tau", "1.2", "--freeze", "i_analysis", "i_synthesis", "i_hyper_analysis",
               "i_hyper_synthesis", "i_z_prior", "--augment", "--threads", "1", "--steps", "4000",
               "--checkpoint-every", "250", "--no-progress", "-o", "training/exp-static/b0.0064", *sys.argv[1:]]))
