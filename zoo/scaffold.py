"""``zoo plugins new NAME``: write a ready plugin package (a model, its config, its contract tests).

The package installs with ``pip install -e DIR``, passes its own tests (which use :mod:`zoo.testing`) and
trains with ``zoo run NAME`` on the built-in sample data; the author then replaces the model's layers.
"""

from __future__ import annotations

import re
from pathlib import Path

from zoo.errors import UsageError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
NAME_RULE = "lower-case letters a-z, digits 0-9 and single hyphens between them, starting with a letter"

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "zoo-{name}"
version = "0.1.0"
description = "The {name} model for yt8m-zoo"
requires-python = ">=3.10"
dependencies = ["yt8m-zoo"]

# yt8m-zoo finds plugins through this entry-point group.
[project.entry-points.yt8m_zoo]
{name} = "{package}"

[tool.setuptools]
packages = ["{package}"]

[tool.setuptools.package-data]
{package} = ["*.yaml"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

INIT = '''\
"""yt8m-zoo plugin: the model ``{name}``.

Registered by path, so the model module (and paddle) is imported only when the model is built; the bundled
config is what ``zoo run {name}`` and ``zoo train {name}`` start from.
"""

from __future__ import annotations

from pathlib import Path

from zoo import hookimpl


@hookimpl
def zoo_register_models(register) -> None:
    register(
        "{package}.model:{cls}",
        name="{name}",
        summary="masked mean of the frames -> hidden layer -> logistic classifier",
        config=str(Path(__file__).with_name("{name}.yaml")),
    )
'''

MODEL = '''\
"""The {name} model: replace the layers with your own; keep the contract (docs/writing_plugins.md)."""

from __future__ import annotations

from dataclasses import dataclass

import paddle
from paddle import nn

from zoo.nn import masked_mean


@dataclass
class {cls}Config:
    """Options of {name} (the model section of a config)."""

    hidden_size: int = 256
    """Width of the hidden layer."""
    dropout: float = 0.2
    """Dropout before the classifier."""


class {cls}(nn.Layer):
    """Masked mean of the frame features -> FC -> ReLU -> dropout -> logistic classifier."""

    name = "{name}"
    Config = {cls}Config

    def __init__(self, config: {cls}Config, spec) -> None:
        super().__init__()
        self.features = list(spec.features)
        self.hidden = nn.Linear(sum(spec.features.values()), config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, spec.num_classes)

    def forward(self, batch: dict) -> paddle.Tensor:
        # batch: one [B, T, D] tensor per feature, mask [B, T] (1 = real frame), num_frames [B]
        frames = paddle.concat([batch[name] for name in self.features], axis=-1)
        pooled = masked_mean(frames, batch["mask"])  # padding frames never count
        return self.classifier(self.dropout(nn.functional.relu(self.hidden(pooled))))
'''

CONFIG = """\
# The config of {name} (registered with config=; `zoo run {name}` starts from it). It inherits the recipe
# installed with yt8m-zoo (configs/base.yaml: the YouTube-8M preset, the seed's training recipe, the sample
# settings) and states only what differs; `zoo models {name}` lists the model's options.
_base_: zoo:base.yaml

model:
  name: {name}
  hidden_size: 256
  dropout: 0.2

train:
  num_gpus: 1

predict:
  batch_size: 64

# `zoo run {name}` without data trains on the built-in sample dataset with these settings on top of the base's.
sample:
  train: {{learning_rate: 0.002}}
"""

TESTS = '''\
"""{name} checked with yt8m-zoo's contract kit (zoo.testing): output shape, finite values, padding, gradients,
BatchNorm statistics, export, loss. Run: pytest"""

from zoo.testing import ModelContract


class Test{cls}(ModelContract):
    model = "{name}"
'''

README = """\
# zoo-{name}

A model plugin for yt8m-zoo.

    pip install -e .
    pytest                  # the contract tests (zoo.testing)
    zoo run {name}          # train, evaluate and predict on the built-in sample data

Edit `{package}/model.py` (the model and its Config) and `{package}/{name}.yaml` (its config). docs/writing_plugins.md
in yt8m-zoo explains the contracts.
"""


def check_name(name: str) -> None:
    """``name`` is a valid plugin and model name (it becomes ``zoo-NAME`` and the package ``zoo_NAME``)."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise UsageError(f"plugin name {name!r} is not valid: use {NAME_RULE} (for example my-model)")


def write_plugin(name: str, output: str | Path | None = None) -> Path:
    """Write the plugin package ``name`` into ``output`` (default ``./NAME``); returns the directory."""
    check_name(name)
    from zoo.plugins import get_plugins

    models = get_plugins().registry("model")
    if name in models:
        entry = models.get(name)
        raise UsageError(
            f"a model named {name!r} already exists (plugin {entry.owner!r}, {entry.distribution}); "
            f"choose another name"
        )
    target = Path(output) if output else Path(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists and is not an empty directory; choose another --output")
    package = "zoo_" + name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-"))
    values = {"name": name, "package": package, "cls": cls}
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{package}/__init__.py": INIT,
        f"{package}/model.py": MODEL,
        f"{package}/{name}.yaml": CONFIG,
        "tests/test_contract.py": TESTS,
    }
    from zoo.atomic import atomic_dir

    with atomic_dir(target) as tmp:
        for rel, template in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(template.format(**values), encoding="utf-8")
    return target
