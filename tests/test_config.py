import pytest

from sslsv.config import ConfigError, load_config, save_config


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.epochz"):
        load_config(path)


def test_wrong_type_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("loss:\n  margin: high\n")
    with pytest.raises(ConfigError, match="loss.margin"):
        load_config(path)


def test_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: x\nloss: {margin: 0.2}\n")
    cfg = load_config(path, ["train.epochs=3", "loss.symmetric=false"])
    assert (cfg.experiment, cfg.loss.margin, cfg.train.epochs, cfg.loss.symmetric) == (
        "x",
        0.2,
        3,
        False,
    )
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg


def test_base_files_merge_and_loops_are_errors(tmp_path):
    (tmp_path / "base.yaml").write_text("experiment: b\nloss: {margin: 0.2, scale: 10}\n")
    (tmp_path / "row.yaml").write_text("base: base.yaml\nexperiment: r\nloss: {margin: 0.0}\n")
    cfg = load_config(tmp_path / "row.yaml")
    assert (cfg.experiment, cfg.loss.margin, cfg.loss.scale) == ("r", 0.0, 10.0)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")
