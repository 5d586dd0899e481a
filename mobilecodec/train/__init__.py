"""Multi-stage training of the codec (Table 5 of the MobileNVC appendix): stage presets, training
data (videos and Vimeo-90K septuplets), rate-distortion losses over unrolled GOPs, and the trainer
(single process or DistributedDataParallel under torchrun).

Submodules: `stages` (presets, no torch), `data`, `losses`, `trainer`. Import from them directly;
this package imports nothing heavy so the CLI parser stays light.
"""
