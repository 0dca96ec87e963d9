"""Deployable models: the traced Paddle Inference program (``tracing``) and its ONNX conversion (``onnx``),
the export directory's metadata, the checks that an export reproduces its model, and the predictors that run
an export."""
