import math

import pytest
import yaml

from momawb import config as cfg
from momawb.generate import GameDatasetConfig


def test_defaults_and_overrides():
    c = cfg.load(GameDatasetConfig, overrides={"n_episodes": 20})
    assert c.n_episodes == 20 and c.episode_length == 10


def test_unknown_key_names_key_and_allowed():
    with pytest.raises(cfg.ConfigError, match=r"n_episode'.*overrides.*allowed keys: p_right, n_episodes"):
        cfg.load(GameDatasetConfig, overrides={"n_episode": 3})


def test_wrong_type_and_range():
    with pytest.raises(cfg.ConfigError, match=r"n_episodes = 'ten'.*expected int"):
        GameDatasetConfig(n_episodes="ten")
    with pytest.raises(cfg.ConfigError, match=r"n_episodes = 0 is out of range; allowed: >= 1"):
        GameDatasetConfig(n_episodes=0)
    with pytest.raises(cfg.ConfigError, match=r"p_right.*allowed: >= 0.0 and <= 1.0"):
        GameDatasetConfig(p_right=(0.5, 1.5))
    assert GameDatasetConfig(p_right=[1, 0]).p_right == (1.0, 0.0)  # ints coerced, list -> tuple


def test_preset_file_errors_name_the_file(tmp_path, monkeypatch):
    nb = tmp_path / "nb"
    nb.mkdir()
    (nb / "bad.yaml").write_text(yaml.safe_dump({"generator": {"n_episodes": -1}}))
    (nb / "typo.yaml").write_text(yaml.safe_dump({"generator": {"episodes": 5}}))
    (nb / "ok.yaml").write_text(yaml.safe_dump({"generator": {"n_episodes": 5}}))
    monkeypatch.setattr(cfg, "PARAMS_DIR", tmp_path)
    with pytest.raises(cfg.ConfigError, match=r"bad.yaml \[generator\]"):
        cfg.load(GameDatasetConfig, "nb", "bad")
    with pytest.raises(cfg.ConfigError, match=r"'episodes'.*typo.yaml"):
        cfg.load(GameDatasetConfig, "nb", "typo")
    with pytest.raises(cfg.ConfigError, match=r"presets for 'nb': \['bad', 'ok', 'typo'\]"):
        cfg.load(GameDatasetConfig, "nb", "nope")
    assert cfg.load(GameDatasetConfig, "nb", "ok", {"seed": 2}).n_episodes == 5
    with pytest.raises(cfg.ConfigError, match="unknown key 'bogus'"):
        (nb / "top.yaml").write_text("bogus: 1\n")
        cfg.validate_preset_file(nb / "top.yaml", {"preset": "ci"})


def test_inf_and_nan():
    @cfg.register("x")
    class C(cfg.Config):
        pass

    from dataclasses import dataclass

    @dataclass
    class T(cfg.Config):
        l_eps: float = cfg.param(1.0, "threshold", gt=0)

    assert math.isinf(T(l_eps="inf").l_eps)
    with pytest.raises(cfg.ConfigError, match="NaN"):
        T(l_eps=float("nan"))


def _notebook_parameters(notebook: str) -> dict:
    """Name -> default of the assignments in the notebook's ``parameters`` cell (its .py source)."""
    import ast
    import jupytext
    nb = jupytext.read(cfg.params_dir().parent / "notebooks" / f"{notebook}.py")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {t.id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
            if isinstance(node, ast.Assign) for t in node.targets}


def test_every_preset_file_is_valid():
    """Every params/<notebook>/<preset>.yaml only uses known sections and the notebook's parameters."""
    files = sorted(cfg.params_dir().glob("*/*.yaml"))
    assert files, "no preset files found"
    for f in files:
        data = yaml.safe_load(f.read_text()) or {}
        cfg.validate_preset_file(f, _notebook_parameters(f.parent.name))
        assert data.get("preset") == f.stem, f"{f}: 'preset' must equal the file name"
