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


def test_base_files_are_merged_under_the_config(tmp_path):
    (tmp_path / "shared.yaml").write_text("dataset: {preset: yt8m}\ntrain: {epoch: 3, batch_size: 8}\n")
    (tmp_path / "mid.yaml").write_text("_base_: shared.yaml\ntrain: {batch_size: 16}\n")
    (tmp_path / "run.yaml").write_text("_base_: mid.yaml\nmodel: {name: mean-pool}\ntrain: {seed: 5}\n")
    cfg = load_config(tmp_path / "run.yaml")
    assert (cfg.train.epoch, cfg.train.batch_size, cfg.train.seed) == (3, 16, 5)
    assert cfg.dataset.num_classes == 3862 and cfg.data.reader == "yt8m-frame" and cfg.eval.metric == "yt8m"
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="include each other"):
        load_config(tmp_path / "loop.yaml")


def test_base_fan_out_reads_each_file_once_and_the_file_count_is_bounded(tmp_path):
    """Nine files, each listing the next ten times: 10**8 paths through the _base_ tree, nine reads."""
    import time

    from zoo import config

    for i in range(9):
        bases = [f"c{i + 1}.yaml"] * 10 if i < 8 else []
        (tmp_path / f"c{i}.yaml").write_text(f"_base_: {bases}\ntrain: {{seed: {i}}}\n")
    started = time.monotonic()
    cfg = load_config(tmp_path / "c0.yaml", ["model.name=mean-pool", "dataset.preset=yt8m"])
    assert cfg.train.seed == 0 and time.monotonic() - started < 5
    n = config.MAX_CONFIG_FILES
    for i in range(n + 1):  # a chain one file longer than the bound
        base = f"_base_: d{i + 1}.yaml\n" if i < n else ""
        (tmp_path / f"d{i}.yaml").write_text(base)
    with pytest.raises(
        ConfigError, match=rf"d0.yaml: pulls in more than {n} files through _base_ \(at .*d0.yaml -> "
    ):
        config.read_yaml(tmp_path / "d0.yaml")


def test_bundled_configs_state_the_seed_recipe_once():
    base = load_config(bundled_config("nextvlad"))
    assert (base.train.learning_rate, base.train.batch_size, base.train.lr_boundary_examples) == (
        2e-4,
        160,
        2_000_000,
    )
    text = bundled_config("nextvlad").read_text()
    assert "_base_: base.yaml" in text and "learning_rate_decay" not in text and "num_classes" not in text


def test_yaml_aliases_are_refused_in_files_and_overrides(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text('a: &a ["x","x"]\nb: &b [*a,*a]\nc: &c [*b,*b]\nmodel: {name: nextvlad}\n')
    with pytest.raises(ConfigError, match="aliases"):
        load_config(bomb)
    with pytest.raises(ConfigError, match="aliases"):
        parse_override("train.seed=[&x 1, *x]")


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epoch=-3", "train.epoch"),
        ("train.batch_size=0", "train.batch_size"),
        ("data.num_workers=-1", "data.num_workers"),
        ("dataset.max_frames=0", "dataset.max_frames"),
        ("eval.batch_size=0", "eval.batch_size"),
        ("train.learning_rate=0", "train.learning_rate"),
    ],
)
def test_range_errors_name_the_key_and_the_override(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config(bundled_config("nextvlad"), [override])
    assert key.split(".")[1] in str(exc.value) and f"override -o {override}" in str(exc.value)


def test_unknown_key_from_an_override_is_reported_as_the_override():
    with pytest.raises(ConfigError) as exc:
        load_config(bundled_config("nextvlad"), ["train.epochs=3"])
    assert "override -o train.epochs=3" in str(exc.value) and "did you mean 'epoch'" in str(exc.value)


def test_dataset_preset_and_unknown_preset():
    cfg = load_config(None, ["dataset.preset=yt8m", "dataset.num_classes=10"], model="mean-pool")
    assert cfg.dataset.num_classes == 10 and cfg.dataset.features == {"rgb": 1024, "audio": 128}
    with pytest.raises(PluginError, match="unknown dataset preset 'yt8n'; did you mean 'yt8m'"):
        load_config(None, ["dataset.preset=yt8n"], model="mean-pool")
    with pytest.raises(ConfigError, match="name a dataset preset"):
        load_config(None, model="mean-pool")


def test_a_plugin_config_inherits_the_installed_recipe(tmp_path):
    """`_base_: zoo:base.yaml` names the config shipped with yt8m-zoo, wherever the plugin's YAML lives."""
    mine = tmp_path / "plugin" / "mine.yaml"
    mine.parent.mkdir()
    mine.write_text("_base_: zoo:base.yaml\nmodel: {name: mean-pool}\ntrain: {num_gpus: 1}\n")
    cfg = load_config(mine)
    base = load_config(bundled_config("nextvlad"))
    assert cfg.train.learning_rate == base.train.learning_rate == 0.0002  # the seed's recipe, not copied
    assert cfg.train.num_gpus == 1 and cfg.predict.formats == ["jsonl", "kaggle-csv"]
    for bad in ("zoo:../pyproject.toml", "zoo:no-such.yaml", "zoo:/etc/passwd"):
        mine.write_text(f"_base_: {bad!r}\nmodel: {{name: mean-pool}}\n")
        with pytest.raises(
            ConfigError, match=r"not a config shipped with yt8m-zoo; the bundled ones are .*zoo:base\.yaml"
        ):
            load_config(mine)
