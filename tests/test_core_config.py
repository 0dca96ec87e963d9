"""Typed configs: YAML + overrides, unknown keys and wrong types rejected with file, key and plugin."""

from __future__ import annotations

import pytest

from zoo.config import bundled_config, load_config, parse_override
from zoo.errors import ConfigError, PluginError


def test_bundled_nextvlad_config_is_the_seed_recipe():
    cfg = load_config(bundled_config("nextvlad"))
    t = cfg.train
    assert (t.learning_rate, t.lr_boundary_examples, t.learning_rate_decay) == (0.0002, 2000000, 0.8)
    assert (t.l2_penalty, t.gradient_clip_norm, t.batch_size, t.num_gpus) == (1e-5, 1.0, 160, 4)
    assert (t.epoch, t.max_iter) == (6, 700000)
    assert cfg.dataset.num_classes == 3862 and cfg.dataset.features == {"rgb": 1024, "audio": 128}
    assert cfg.eval.batch_size == 160 and cfg.predict.batch_size == 1


def test_overrides_are_yaml_not_eval():
    keys, value = parse_override("train.learning_rate=1e-3")
    assert keys == ["train", "learning_rate"] and value == "1e-3"  # YAML 1.1; coerced by the float field
    cfg = load_config(bundled_config("nextvlad"), ["train.learning_rate=1e-3", "model.cluster_size=64"])
    assert cfg.train.learning_rate == 0.001 and cfg.model["cluster_size"] == 64
    with pytest.raises(ConfigError):
        load_config(None, ["train.batch_size=__import__('os').getcwd()"], model="nextvlad")


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("train.nosuchkey=1", ["train", "nosuchkey", "the train section"]),
        ("train.batch_size=big", ["train.batch_size", "expected an integer"]),
        ("model.clusters=3", ["model", "clusters", "model plugin 'nextvlad'"]),
        ("data.verify_crc=maybe", ["data.verify_crc", "true or false"]),
        ("nosection.x=1", ["nosection"]),
        ("train.fix_random_seed=1", ["expected true or false"]),
    ],
)
def test_bad_keys_and_types_name_the_problem(override, fragments):
    with pytest.raises(ConfigError) as exc:
        load_config(bundled_config("nextvlad"), [override])
    message = str(exc.value)
    assert "nextvlad.yaml" in message or "override" in message
    for fragment in fragments:
        assert fragment in message


def test_unknown_model_is_a_plugin_error_with_suggestions():
    with pytest.raises(PluginError, match="did you mean 'nextvlad'"):
        load_config(None, model="nextvlda")


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text("model: {name: nextvlad}\ntrian: {epoch: 1}\n")
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        load_config(typo)


def test_config_round_trips_through_to_dict():
    cfg = load_config(bundled_config("nextvlad"), ["train.epoch=2", "model.groups=4"])
    again = load_config(None, raw=cfg.to_dict())
    assert again.to_dict() == cfg.to_dict()


def test_shared_facts_reach_the_plugins():
    import zoo

    cfg = load_config(bundled_config("nextvlad"), ["dataset.num_classes=17", "dataset.features={rgb: 8}"])
    assert cfg.dataset.num_classes == 17 and cfg.dataset.features == {"rgb": 8}
    reader = zoo.build_reader("yt8m-frame", spec=cfg.dataset, paths=[])
    assert reader.spec.num_classes == 17
