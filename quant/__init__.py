"""int8 quantization of the codec with aimet-torch: PTQ calibration, QAT, int8 accuracy checks."""
