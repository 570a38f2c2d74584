"""edgeact.export: turn a checkpoint into a self-describing policy artifact (ONNX or TensorRT)."""
