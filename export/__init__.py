"""Export: torch -> ONNX / TFLite, quantization, parity checks against torch, and the deployable bundle."""
