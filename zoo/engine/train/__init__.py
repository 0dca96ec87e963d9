"""Training: the loop (``trainer``), the optimizer and its in-place update (``optimizer``, ``update`` and the
C kernel ``_adam.c``), the learning-rate schedule, the weight average (``ema``), distillation from teacher
predictions (``distill``) and the built-in callbacks (``callbacks``)."""
