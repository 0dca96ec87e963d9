"""Nothing silent, nothing misleading: records in two disagreeing layouts and repeated training ids are
warned about with a count and an example; ensemble weights normalise without overflow; files the zoo writes
get the mode a plain open() gives."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pytest
from zoo_yt8m_data.tfrecord import frame
from zoo_yt8m_data.wire import encode_sequence_example

import zoo
from zoo import DatasetSpec
from zoo.cli import main
from zoo.engine.infer.ensemble import check_weights

SPEC = DatasetSpec(num_classes=4, features={"rgb": 8, "audio": 4}, max_frames=10)


def _both_layouts(vid: str, other: str, labels, other_labels, frames: int, other_frames: int) -> bytes:
    rng = np.random.default_rng(frames)
    return frame(
        encode_sequence_example(
            {
                "id": vid.encode(),
                "example/id": other.encode(),
                "labels": labels,
                "clip/label/index": other_labels,
            },
            {
                "rgb": rng.integers(0, 255, (frames, 8), dtype=np.uint8),
                "audio": rng.integers(0, 255, (frames, 4), dtype=np.uint8),
                "RGB/feature/floats": rng.random((other_frames, 8), dtype=np.float32),
                "AUDIO/feature/floats": rng.random((other_frames, 4), dtype=np.float32),
            },
        )
    )


def test_records_in_two_disagreeing_layouts_are_warned_about_with_a_count_and_an_example(tmp_path, capsys):
    path = tmp_path / "mixed.tfrecord"
    path.write_bytes(
        _both_layouts("a", "a", [1], [1], 3, 3)  # both layouts, agreeing: nothing to say
        + _both_layouts("b", "B", [1], [1], 3, 3)
        + _both_layouts("c", "c", [1], [2], 3, 5)
    )
    records = list(zoo.build_reader("yt8m-frame", paths=[str(path)], spec=SPEC))
    assert [r["id"] for r in records] == ["a", "b", "c"]  # read with the YouTube-8M keys
    err = capsys.readouterr().err
    assert f"warning: {path}: 2 record(s) carry both the YouTube-8M and the MediaPipe layout" in err
    assert "first: record 1: id 'b' vs example/id 'B'" in err and "data.layout" in err
    assert err.count("warning:") == 1
    list(zoo.build_reader("yt8m-frame", paths=[str(path)], spec=SPEC, layout="yt8m"))
    assert "warning" not in capsys.readouterr().err  # a layout chosen: nothing is ambiguous


@pytest.mark.integration
def test_repeated_training_ids_are_warned_about_with_a_count_and_an_example(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for split in ("train", "valid"):
        (data / split).mkdir(parents=True)
    records = b"".join(
        frame(
            encode_sequence_example(
                {"id": f"v{i}".encode(), "labels": [i % 4]},
                {
                    "rgb": rng.integers(0, 255, (3, 8), dtype=np.uint8),
                    "audio": rng.integers(0, 255, (3, 4), dtype=np.uint8),
                },
            )
        )
        for i in range(4)
    )
    (data / "train" / "a.tfrecord").write_bytes(records)
    shutil.copy(data / "train" / "a.tfrecord", data / "train" / "copy-of-a.tfrecord")
    (data / "valid" / "a.tfrecord").write_bytes(records)
    config = tmp_path / "c.yaml"
    config.write_text(
        "dataset: {preset: yt8m, num_classes: 4, features: {rgb: 8, audio: 4}, max_frames: 6}\n"
        "model: {name: mean-pool}\ntrain: {epoch: 2, batch_size: 2, checkpoint_steps: 0}\n"
    )
    assert (
        main(["train", "--config", str(config), "--data", str(data), "--save_dir", str(tmp_path / "run")])
        == 0
    )
    err = capsys.readouterr().err
    assert "warning: the training data holds 4 video id(s) more than once (4 repeated reads an epoch" in err
    assert "for example 'v0', read 2 times" in err and err.count("more than once") == 1  # once, not per epoch


def test_ensemble_weights_normalise_without_overflow():
    np.testing.assert_array_equal(check_weights([1e308, 1e308], 2, "--weights"), [0.5, 0.5])
    np.testing.assert_array_equal(check_weights([1e308, 0.0], 2, "--weights"), [1.0, 0.0])
    np.testing.assert_array_equal(check_weights([5e-324, 5e-324], 2, "--weights"), [0.5, 0.5])
    np.testing.assert_allclose(check_weights([1.0, 3.0], 2, "--weights"), [0.25, 0.75])


def test_files_get_the_mode_a_plain_open_gives(tmp_path, paddle):
    """Weights (safetensors writes them 0600 itself), checkpoints and text files all follow the umask."""
    import paddle

    from zoo.engine.runs.checkpoint import save_arrays, save_checkpoint

    old = os.umask(0o002)
    try:
        save_arrays(tmp_path / "model.safetensors", {"w": np.ones(3, np.float32)})
        model = paddle.nn.Linear(2, 2)
        save_checkpoint(tmp_path, model, paddle.optimizer.Adam(parameters=model.parameters()), {"step": 1})
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    plain = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert plain == 0o664
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 6
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {
        p.name: oct(plain) for p in written
    }
    folders = [p for p in tmp_path.rglob("*") if p.is_dir()]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(0o775)}
