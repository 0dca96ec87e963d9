"""The engine's commands, callbacks, config sections and the ``jsonl`` prediction format, registered through
the ``yt8m_zoo`` entry-point group like a third party's plugin. Targets are ``"module:Class"`` paths: nothing
here imports the engine or paddle."""

from __future__ import annotations

from zoo.hookspecs import hookimpl

COMMANDS = {
    "run": (
        "workflow:RunCommand",
        "train, evaluate and predict in one go (built-in sample data unless data is given)",
    ),
    "train": (
        "workflow:TrainCommand",
        "train a model (checkpoints, metrics history and plots go to train.save_dir)",
    ),
    "eval": ("workflow:EvalCommand", "evaluate weights with the config's metric (table, JSON and reports)"),
    "predict": (
        "workflow:PredictCommand",
        "top-k classes with probabilities per video (JSONL and the formats)",
    ),
    "models": ("models:ModelsCommand", "list the registered models, their options and bundled configs"),
    "bench": ("bench:BenchCommand", "benchmark models per device count: videos/s, scaling, quality, memory"),
    "export": (
        "export:ExportCommand",
        "export a model for Paddle Inference or ONNX Runtime (zoo predict --model DIR runs it)",
    ),
    "ensemble": (
        "ensemble:EnsembleCommand",
        "combine runs or prediction files: weighted arithmetic or geometric mean, fitted or given weights",
    ),
    "average": (
        "average:AverageCommand",
        "average the weights of runs or checkpoints of one architecture into a new run directory",
    ),
}

CALLBACKS = {
    "history": ("zoo.engine.train.callbacks:HistoryCallback", "metrics history as JSONL and CSV, and a plot"),
    "visualdl": (
        "zoo.engine.train.callbacks:VisualDLCallback",
        "VisualDL logs (pip install 'yt8m-zoo[visualdl]')",
    ),
    "tensorboard": (
        "zoo.engine.train.callbacks:TensorBoardCallback",
        "TensorBoard event files ('yt8m-zoo[tensorboard]')",
    ),
}

FORMATS = {
    "jsonl": (
        "zoo.engine.infer.predictions:JsonLinesFormat",
        "JSON lines: id, classes, scores (and class names)",
    ),
}


@hookimpl
def zoo_register_commands(register) -> None:
    for name, (target, summary) in COMMANDS.items():
        register(f"{__name__}.{target}", name=name, summary=summary)


@hookimpl
def zoo_register_callbacks(register) -> None:
    for name, (target, summary) in CALLBACKS.items():
        register(target, name=name, summary=summary)


@hookimpl
def zoo_register_formats(register) -> None:
    for name, (target, summary) in FORMATS.items():
        register(target, name=name, summary=summary)


SECTIONS = {
    "train": "zoo.engine.settings:TrainConfig",
    "eval": "zoo.engine.settings:EvalConfig",
    "predict": "zoo.engine.settings:PredictConfig",
}


@hookimpl
def zoo_register_config_sections(register) -> None:
    for name, target in SECTIONS.items():
        register(name, target)
