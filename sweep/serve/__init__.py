"""A trained run in use: classifying new text (torch or ONNX Runtime), the ONNX export and its check,
int8 quantization, ONNX Runtime's fusions, and the model card."""
