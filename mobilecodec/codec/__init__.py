"""Real coding with the PyTorch model: frames -> entropy-coded .mnvc stream -> frames."""
