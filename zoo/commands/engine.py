"""run / train / eval / predict / score / bench / export: thin argument handling over zoo.engine."""

from __future__ import annotations

import argparse

from zoo.commands.common import add_config_arguments
from zoo.errors import ZooError


class _Pending:
    issue = 0

    @classmethod
    def run(cls, args: argparse.Namespace) -> int:
        raise ZooError(f"`zoo {cls.name}` is not built yet (issue {cls.issue})")


class RunCommand(_Pending):
    name = "run"
    help = "train, evaluate and predict in one go (built-in sample data unless --data is given)"
    issue = 5

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, model_positional=True)


class TrainCommand(_Pending):
    name = "train"
    help = "train a model"
    issue = 5

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, model_positional=True)


class EvalCommand(_Pending):
    name = "eval"
    help = "evaluate weights: GAP, Hit@1, PERR, mAP, loss"
    issue = 5

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, model_positional=True)


class PredictCommand(_Pending):
    name = "predict"
    help = "top-k classes with probabilities per video (Kaggle CSV and JSONL)"
    issue = 5

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_config_arguments(parser, model_positional=True)


class ScoreCommand(_Pending):
    name = "score"
    help = "score a Kaggle-format prediction file against labelled records"
    issue = 4

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass


class BenchCommand(_Pending):
    name = "bench"
    help = "benchmark models per device configuration: throughput, GAP, Hit@1, memory"
    issue = 7

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass


class ExportCommand(_Pending):
    name = "export"
    help = "export a model for Paddle Inference"
    issue = 8

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        pass


COMMANDS = [RunCommand, TrainCommand, EvalCommand, PredictCommand, ScoreCommand, BenchCommand, ExportCommand]
