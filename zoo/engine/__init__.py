"""The engine: training, evaluation, prediction and export of registered models, one folder per concern.

- ``train/``        the training loop and what it steps: losses, optimizer and update, schedule, EMA,
                    distillation, callbacks, and ``zoo train`` on several processes (``multiprocess``)
- ``runs/``         what a run leaves on disk: the run directory and its lock, checkpoints, weights from any
                    source, weight averaging
- ``infer/``        evaluation and prediction loops, top-k, prediction formats and files, ensembles
- ``export/``       deployable models: Paddle Inference and ONNX exports, their metadata and checks, the predictors
- ``distributed/``  which rank this is and its collectives (``context``), the launch plan (``launch``), what runs
                    in each process (``worker``) and the watch over the ranks (``watch``)
- ``commands/``     the engine's ``zoo`` commands (argument handling only), registered like a plugin's
- ``feed.py``       feeding batches to a model: a split's batches, tensors on the device, logits, the default loss
- ``runtime.py``    the Paddle runtime: environment, device and threads
- ``settings.py``   the engine's config sections (train, eval, predict), registered with the core
- ``build.py``      from a validated config to the objects a run needs: data splits, readers, model, metric
- ``bench.py``      the benchmark runner behind ``zoo bench``
- ``api.py``        what a plugin may use of the engine (the only engine module plugins import)

Importing a folder imports nothing of it: each ``__init__`` only says what lives there.
"""
