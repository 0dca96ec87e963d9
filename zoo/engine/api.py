"""What a plugin may use of the engine: the one engine module a third party is told to import
(docs/writing_plugins.md names it with the core's public modules; import-linter checks that no plugin imports
any other module of ``zoo.engine``).

A command extension (hook ``zoo_register_extensions``) handling ``zoo eval``/``predict``/``run`` flags builds
the command's config and model the way the command does (:func:`prepare_config`, :func:`load_for_inference`,
:func:`exported_scorer`), trains with :class:`Trainer`, scores batches with :func:`dygraph_scorer` and prints
and writes results as the commands do; :func:`load_class_names` reads a class-names file. (Ranking
helpers are a library of their own: :mod:`zoo.ranking`.)

Importing this module imports the engine (numpy; paddle when a model is built): import it inside the
function that needs it, not at the top of a plugin module that ``zoo --help`` may load.
"""

from __future__ import annotations

from zoo.engine.build import SAMPLE_VERSION, build_model, build_reader, split_paths
from zoo.engine.commands.common import (
    add_config_arguments,
    add_data_argument,
    add_weights_arguments,
    exported_scorer,
    load_for_inference,
    metric_rows,
    prepare_config,
    print_table,
    write_results,
)
from zoo.engine.commands.workflow import result_model
from zoo.engine.feed import dequantize_on_device
from zoo.engine.infer.loops import dygraph_scorer, evaluate, predict
from zoo.engine.infer.predictions import load_class_names
from zoo.engine.runs.weights import apply_weights, read_weights
from zoo.engine.train.trainer import Trainer

__all__ = [
    "SAMPLE_VERSION",
    "Trainer",
    "add_config_arguments",
    "add_data_argument",
    "add_weights_arguments",
    "apply_weights",
    "build_model",
    "build_reader",
    "dequantize_on_device",
    "dygraph_scorer",
    "evaluate",
    "exported_scorer",
    "load_class_names",
    "load_for_inference",
    "metric_rows",
    "predict",
    "prepare_config",
    "print_table",
    "read_weights",
    "result_model",
    "split_paths",
    "write_results",
]
