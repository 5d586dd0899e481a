"""ONNX export of the codec's network stages, buffer as graph I/O, QDQ int8 and QNN HTP compile."""
