"""Training: the loop (``trainer``), the loss (``losses``), the optimizer and its in-place update
(``optimizer``, ``update`` and the C kernel ``_adam.c``), the learning-rate schedule, the weight average
(``ema``), distillation from teacher predictions (``distill``), the built-in callbacks (``callbacks``) and
``zoo train`` on several processes (``multiprocess``)."""
