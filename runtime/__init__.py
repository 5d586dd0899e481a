"""Host-side runtime: streaming encoder/decoder, profiler and complexity counters.

Kept import-light on purpose: submodules import torch / onnx / onnxruntime lazily, so importing
`runtime` (e.g. from the CLI parser) costs nothing.
"""
