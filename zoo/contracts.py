"""The plugin contracts: what a model, reader, metric, command, callback or dataset preset must provide.

These are ``typing.Protocol`` classes, checked by type checkers and, where the engine needs to know, at run
time with ``isinstance`` (the protocols are ``runtime_checkable``). docs/plugin_hooks.md documents them with
their exact signatures (a test compares the two). Nothing here imports paddle or numpy: a batch is a dict of
arrays or tensors whose layout is documented on :class:`Model`.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about the data that models, readers and metrics share (stated once, in the dataset section)."""

    num_classes: int
    """Number of classes."""
    features: dict[str, int]
    """Frame feature names and their sizes, in model input order."""
    max_frames: int = 300
    """Frames kept per video; longer videos are truncated when they are decoded."""


@dataclass(frozen=True)
class DatasetPreset:
    """A named :class:`DatasetSpec` that configs refer to (``dataset: {preset: NAME}``), owned by a plugin."""

    name: str
    spec: DatasetSpec
    description: str = ""
    reader: str | None = None
    """The reader that reads this dataset's files (configs may name another)."""
    other_readers: tuple[str, ...] = ()
    """Further readers of this dataset's files (``zoo.build_reader`` takes their facts from this preset)."""
    metric: str | None = None
    """The metric its results are reported with."""
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Model(Protocol):
    """A ``paddle.nn.Layer`` built as ``Model(config, spec)``.

    ``forward(batch)`` takes one ``[B, T, D]`` float32 tensor per feature of ``spec.features``, ``mask``
    ``[B, T]`` float32 (1 for a real frame, 0 for padding) and ``num_frames`` ``[B]`` int64, and returns the
    logits ``[B, num_classes]`` or a dict holding them under ``"logits"`` beside anything its loss needs
    (auxiliary heads, for example). Evaluation, prediction and export use the logits only.
    """

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any, spec: DatasetSpec) -> None: ...

    def forward(self, batch: Mapping[str, Any]) -> Any: ...


@runtime_checkable
class ModelWithLoss(Model, Protocol):
    """A model that trains with its own loss instead of the engine's sigmoid cross-entropy."""

    def loss(self, outputs: Any, batch: Mapping[str, Any]) -> Any:
        """The scalar training loss from ``forward``'s outputs and the batch (``labels`` ``[B, C]``)."""
        ...


@runtime_checkable
class ConvertsForeignWeights(Protocol):
    """A model that maps another framework's weight names onto its own (NeXtVLAD: PaddleVideo 1.x)."""

    def convert_paddlevideo(self, state: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """``state`` under this model's names, and the foreign names left unused."""
        ...


@runtime_checkable
class ExportConstants(Protocol):
    """A layer that folds what it derives from its parameters alone into constants of an exported program."""

    def export_constants(self) -> Any:
        """A context manager inside which the layer computes those values once, for tracing."""
        ...


@runtime_checkable
class CustomOps(Protocol):
    """A model whose exports may call Paddle custom operators of its own (``zoo export --custom-ops``)."""

    def custom_ops(self) -> Any:
        """A context manager inside which the traced forward calls the operators (registering them first)."""
        ...

    @staticmethod
    def load_custom_ops() -> None:
        """Register the operators in this process; called before a predictor loads an export that uses them."""
        ...


@dataclass(frozen=True)
class Int8Policy:
    """Which of a model's matrix products an int8 export (``zoo export --precision int8``) quantizes."""

    allowed: bool = True
    """False: the model refuses int8 exports (``reason`` says why)."""
    reason: str = ""
    quantize: tuple[str, ...] | None = None
    """Parameter names (``model.named_parameters()``; a name ending in ``.`` is a prefix) whose products with
    the activations become int8; every other product, and every product whose matrix is not a parameter as
    it stands (a constant the export derives from parameters), stays fp32. None: every product whose
    matrix is a constant. BatchNorm, softmax and the other elementwise operations always stay fp32."""
    derived: bool = False
    """Also the products whose matrix is a constant the export derives from parameters (NeXtVLAD's
    frame-level assignment, attention and expansion matrices, with the BatchNorm folded in)."""
    activations: bool = False
    """Also the products of two activations (NeXtVLAD's pooling of the frames by their assignments): static
    quantization calibrates both operands' ranges; dynamic finds them per batch, row by row for the first
    operand (``zoo.engine.export.quantize.quantize_activation_products``)."""


@runtime_checkable
class Int8Quantizable(Protocol):
    """A model that states which of its products an int8 export quantizes, or that it refuses int8."""

    def int8_policy(self) -> Int8Policy:
        """The policy for this model as configured (read once, before anything is exported)."""
        ...


@runtime_checkable
class Reader(Protocol):
    """Reads videos from files: ``Reader(config, spec)`` with ``config.paths`` (files, folders, globs).

    Each video is a dict: ``id`` (str), ``labels`` (int array of class ids), one ``[n, D]`` array per feature
    (float32, or uint8 codes with the reader's ``dequantize`` table) with ``n <= spec.max_frames``, and
    ``num_frames`` (the frames kept).
    """

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any, spec: DatasetSpec) -> None: ...

    def sources(self) -> list[str]:
        """The files this reader will read, in a stable order."""
        ...

    def read(self, source: str) -> Iterator[dict[str, Any]]:
        """The videos of one file, in file order; bad records raise ``zoo.DataError`` naming file and record."""
        ...

    def __iter__(self) -> Iterator[dict[str, Any]]: ...


@runtime_checkable
class PartitionedReader(Protocol):
    """A reader that reads a share of one file: records ``start, start + step, ...`` (ranks and data-loader
    workers split a file this way). Without it each share reads the whole file and keeps its records."""

    def read_part(self, source: str, start: int, step: int) -> Iterator[dict[str, Any]]:
        """The videos of ``source`` at record positions ``start, start + step, ...``, as ``read`` yields them."""
        ...


@runtime_checkable
class CountingReader(Protocol):
    """A reader that counts a file's videos without decoding them (the training loop's epoch length, resume)."""

    def count(self, source: str) -> int:
        """The number of videos ``read(source)`` yields."""
        ...


@runtime_checkable
class PrefetchingReader(Protocol):
    """A reader that can start fetching a file before it is read (remote data: the next file in flight)."""

    def prefetch(self, source: str) -> None:
        """A hint that ``source`` is read next; it must not fail (a problem surfaces when it is read)."""
        ...


@runtime_checkable
class PartCountingReader(Protocol):
    """A reader whose examples are not its records (one per rated segment, say): it counts a share itself."""

    def count_part(self, source: str, start: int, step: int) -> int:
        """The number of examples ``read_part(source, start, step)`` yields."""
        ...


@runtime_checkable
class DequantizingReader(Protocol):
    """A reader that yields uint8 feature codes: it must say what they mean. Required of every reader whose
    videos hold uint8 features (``zoo.testing.check_reader`` fails one without it)."""

    def dequantize_into(self, values: Any, out: Any) -> None:
        """Write the float32 values of the uint8 codes ``values`` into ``out`` (same shape), in place."""
        ...


@runtime_checkable
class SkipReportingReader(Protocol):
    """A reader that skips damaged records instead of failing: ``skipped`` lists them (objects with ``path``,
    ``index``, ``problem`` and ``recoverable``), and data-loader workers send them to the main process."""

    skipped: list[Any]


@runtime_checkable
class SampleDataReader(Reader, Protocol):
    """A reader that can build a small dataset of its format for ``zoo run`` without data paths."""

    @classmethod
    def sample_data(cls, root: Path) -> dict[str, Any]:
        """Make (once) and describe a sample dataset in ``root``: ``train``, ``valid``, ``test`` (lists of
        paths), ``num_classes``, and optionally ``vocabulary`` (a class-names file)."""
        ...


@runtime_checkable
class Metric(Protocol):
    """Streams batches of scores and labels into results.

    ``headline`` names the key that ranks runs (the bench table and ``zoo run`` show it first) and
    ``display`` the keys worth showing, in order; ``compute()`` may return more.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    headline: ClassVar[str]
    display: ClassVar[tuple[str, ...]]

    def __init__(self, config: Any, spec: DatasetSpec) -> None: ...

    def update(self, scores: Any, labels: Any, loss: float | None = None, mask: Any = None) -> None:
        """Add one batch: probabilities ``[B, C]`` and multi-hot labels ``[B, C]`` (numpy). ``mask`` ``[B, C]``
        (the batch's ``label_mask``, from segment-mode readers) says which (example, class) pairs are rated;
        None: all. A metric that cannot honour a mask raises ``zoo.DataError`` saying which metric can."""
        ...

    def compute(self) -> dict[str, float]: ...

    def reset(self) -> None: ...

    def state(self) -> Any:
        """What ``merge`` needs to combine the results of several ranks (picklable)."""
        ...

    def merge(self, states: list[Any]) -> None:
        """Replace this metric's data with the union of ``states`` (one per rank)."""
        ...

    def write_reports(self, out_dir: Path, class_names: dict[int, str] | None) -> list[Path]:
        """Write any detailed reports (per-class tables, ...) into ``out_dir``; return the files written."""
        ...


@runtime_checkable
class RankedMetric(Metric, Protocol):
    """A metric that takes each video's listed classes instead of a dense score matrix (prediction files)."""

    def update_ranked(self, classes: Any, scores: Any, labels: Any, loss: float | None = None) -> None:
        """``classes`` and ``scores`` ``[B, L]`` (short rows padded with score ``-inf``), ``labels`` ``[B, C]``."""
        ...


@runtime_checkable
class Command(Protocol):
    """A ``zoo`` sub-command. ``run`` returns the exit code; raise ``zoo.UsageError`` (exit 2) for bad
    arguments and ``zoo.ZooError`` (exit 1) for failures."""

    name: ClassVar[str]
    help: ClassVar[str]

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...

    @staticmethod
    def run(args: argparse.Namespace) -> int: ...


@runtime_checkable
class CommandExtension(Protocol):
    """Flags a plugin adds to another plugin's (or the engine's) ``zoo`` command, and what they do.

    Registered with ``register("module:Class", name=..., command="predict")`` (hook
    ``zoo_register_extensions``): when ``zoo predict`` runs, ``add_arguments`` adds the flags to its parser
    (after the command's own; a flag that clashes is an error naming the extension), and ``run(args)`` is
    called before the command's own ``run``: it returns an exit code when it handled the call (the
    command's ``run`` is then skipped), or None to let the command run as usual. Errors as for commands."""

    name: ClassVar[str]
    command: ClassVar[str]
    """The command it extends."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...

    @staticmethod
    def run(args: argparse.Namespace) -> int | None: ...


@dataclass(frozen=True)
class Prediction:
    """One video's top classes, best first."""

    id: str
    classes: list[int]
    scores: list[float]


@runtime_checkable
class PredictionFormat(Protocol):
    """A prediction file format: ``zoo predict`` writes the formats of ``predict.formats``; ``zoo score`` and
    ``zoo ensemble`` read them. ``Format(config)``; ``suffix`` is the file name's ending (``.csv``)."""

    name: ClassVar[str]
    Config: ClassVar[type]
    suffix: ClassVar[str]

    def __init__(self, config: Any) -> None: ...

    def write(self, path: Path, predictions: list[Prediction], class_names: dict[int, str] | None) -> None:
        """Write ``predictions`` to ``path`` atomically."""
        ...

    def read(self, path: Path) -> Iterator[Prediction]:
        """The predictions of a file; a malformed line raises ``zoo.DataError`` naming the file and line."""
        ...


@runtime_checkable
class ColumnarPredictionFormat(PredictionFormat, Protocol):
    """A format that reads and writes whole files as arrays (``zoo.prediction_files.PredictionColumns``):
    ``zoo ensemble`` and the teacher store use it for files of millions of videos."""

    def read_columns(self, path: Path, *, rank: bool = True, dtype: type = ...) -> Any:
        """The file's rows in file order (each ranked best first when ``rank``); errors as ``read``."""
        ...

    def write_columns(self, path: Path, columns: Any, class_names: dict[int, str] | None) -> None:
        """Write ``columns`` atomically, byte for byte as ``write`` writes the same predictions."""
        ...


@dataclass
class TrainingState:
    """What callbacks see of a training run."""

    run_dir: Path
    config: Any
    """The run's ``zoo.config.ZooConfig``."""
    step: int = 0
    epoch: int = 0
    examples: int = 0
    headline: str = ""
    """The metric's headline key (callbacks plot it without knowing the metric)."""
    is_main: bool = True
    """False on the ranks of a distributed job that do not write files."""


@runtime_checkable
class Callback(Protocol):
    """Sees a training run: ``Callback(config, state)`` then the events below, in order.

    ``on_step`` rows hold ``step``, ``epoch``, ``loss``, ``lr``, ``examples``; ``on_validation`` the metric's
    results; ``on_epoch`` the epoch row (``train_loss``, ``valid_<key>``, ...). Subclass
    :class:`CallbackBase` to implement only the events you need.
    """

    name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, config: Any, state: TrainingState) -> None: ...

    def on_train_start(self, state: TrainingState) -> None: ...

    def on_step(self, state: TrainingState, row: dict[str, Any]) -> None: ...

    def on_validation(self, state: TrainingState, metrics: dict[str, float]) -> None: ...

    def on_epoch(self, state: TrainingState, row: dict[str, Any]) -> None: ...

    def on_train_end(self, state: TrainingState) -> None: ...


class CallbackBase:
    """No-op implementations of every :class:`Callback` event."""

    @dataclass
    class Config:
        pass

    def __init__(self, config: Any, state: TrainingState) -> None:
        self.config = config

    def on_train_start(self, state: TrainingState) -> None:
        return None

    def on_step(self, state: TrainingState, row: dict[str, Any]) -> None:
        return None

    def on_validation(self, state: TrainingState, metrics: dict[str, float]) -> None:
        return None

    def on_epoch(self, state: TrainingState, row: dict[str, Any]) -> None:
        return None

    def on_train_end(self, state: TrainingState) -> None:
        return None


PROTOCOLS: dict[str, type] = {
    "model": Model,
    "reader": Reader,
    "metric": Metric,
    "command": Command,
    "callback": Callback,
    "format": PredictionFormat,
    "extension": CommandExtension,
}
