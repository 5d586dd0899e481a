"""Names of the folders `export` and `compile` write, kept free of heavy imports so the CLI parser
can name them (each command replaces only a folder of its own kind)."""

MANIFEST = "manifest.json"  # the marker file of both kinds of folder
PACKAGE_FORMAT = "mobilecodec-onnx-package"  # `mobilecodec export`: ONNX graphs + manifest
CONTEXT_FORMAT = "mobilecodec-qnn-context"  # `mobilecodec compile`: QNN context binaries + manifest
