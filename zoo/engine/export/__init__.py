"""Deployable models: the model traced into a Paddle Inference program and checked (``tracing``), the
export directory's metadata (``metadata``), the checks that an export reproduces its model (``checks``), the
predictors that run an export (``predictor``) and the ONNX conversion and runtime (``onnx``)."""
