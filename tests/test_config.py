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


def test_preset_edits_are_read_and_callers_get_their_own_copy(tmp_path, monkeypatch):
    """Presets are parsed once per file version: an edited file (a notebook user tuning a preset
    between runs) is read again, and a caller mutating what it got changes nothing for the next."""
    import os
    nb = tmp_path / "nb"
    nb.mkdir()
    path = nb / "p.yaml"
    path.write_text(yaml.safe_dump({"generator": {"n_episodes": 5}}))
    monkeypatch.setattr(cfg, "PARAMS_DIR", tmp_path)
    first, _ = cfg.read_preset("nb", "p")
    first["generator"]["n_episodes"] = 99
    assert cfg.read_preset("nb", "p")[0] == {"generator": {"n_episodes": 5}}
    mtime = path.stat().st_mtime_ns
    path.write_text(yaml.safe_dump({"generator": {"n_episodes": 17}}))      # another size
    os.utime(path, ns=(mtime, mtime))                                       # (the same mtime)
    assert cfg.load(GameDatasetConfig, "nb", "p").n_episodes == 17
    path.write_text(yaml.safe_dump({"generator": {"n_episodes": 18}}))      # the same size, a later mtime
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert cfg.load(GameDatasetConfig, "nb", "p").n_episodes == 18


def test_inf_and_nan():
    from dataclasses import dataclass

    @dataclass
    class T(cfg.Config):
        l_eps: float = cfg.param(1.0, "threshold", gt=0, allow_inf=True)
        lr: float = cfg.param(1.0, "step", gt=0)

    assert math.isinf(T(l_eps="inf").l_eps) and math.isinf(T(l_eps=float("inf")).l_eps)
    with pytest.raises(cfg.ConfigError, match="NaN"):
        T(l_eps=float("nan"))
    with pytest.raises(cfg.ConfigError, match=r"T.lr = inf is not finite; allowed: a finite number > 0"):
        T(lr="inf")


def _sections():
    return [(name, cfg.section_class(name)) for name in cfg.SECTIONS]


@pytest.mark.parametrize("name,cls", _sections(), ids=[n for n in cfg.SECTIONS])
def test_every_section_takes_numeric_strings_and_refuses_unusable_values(name, cls):
    """Issue 14 items 8 and 9, for every field of every registered section: a number written
    as a string (YAML 1.1 reads `1e-3` so) is taken; an infinite float is refused at
    construction unless the field says `allow_inf`; a device must be one torch knows."""
    import dataclasses
    import typing
    default = cls()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value, tp = getattr(default, f.name), hints[f.name]
        if tp in (int, float) and not isinstance(value, bool):
            text = f"{value:e}" if tp is float else str(value)      # '3.000000e-05', '300'
            assert getattr(cls(**{f.name: text}), f.name) == pytest.approx(value), (name, f.name)
        if tp is float:
            for bad in (float("inf"), "-inf", "inf"):
                if f.metadata.get("allow_inf") and not str(bad).startswith("-"):
                    continue
                with pytest.raises(cfg.ConfigError, match=rf"{f.name} = .*(not finite|out of range)"):
                    cls(**{f.name: bad})
        if f.name == "device":
            with pytest.raises(cfg.ConfigError, match=r"device = 'gpu' is not a device"):
                cls(device="gpu")
            assert cls(device="cuda:1").device == "cuda:1"


def test_world_model_log_variance_bounds_fail_at_construction():
    """Issue 14 item 9: min_logvar=-inf or max_logvar='inf' diverged at step 0 before."""
    from momawb.world_model import WorldModelConfig
    with pytest.raises(cfg.ConfigError, match=r"WorldModelConfig.min_logvar = -inf is not finite"):
        WorldModelConfig(min_logvar=float("-inf"))
    with pytest.raises(cfg.ConfigError, match=r"WorldModelConfig.max_logvar = inf is not finite"):
        WorldModelConfig(max_logvar="inf")
    with pytest.raises(cfg.ConfigError, match=r"min_logvar = 1.0 must be < max_logvar = 0.5"):
        WorldModelConfig(min_logvar="1.0")
    from momawb.moma_ppo import MomaPPOConfig
    assert math.isinf(MomaPPOConfig(l_eps="inf").l_eps)       # inf there means no adaptive rollouts


def test_numbers_and_lists_written_other_ways():
    from momawb.world_model import WorldModelConfig
    c = WorldModelConfig(lr="1e-3", steps="1e5", batch_size=256.0, hidden="[64, 64]")
    assert (c.lr, c.steps, c.batch_size, c.hidden) == (0.001, 100_000, 256, (64, 64))
    assert isinstance(c.steps, int) and WorldModelConfig(hidden=32).hidden == (32,)
    with pytest.raises(cfg.ConfigError, match=r"steps = 2.5: expected int, allowed: >= 1"):
        WorldModelConfig(steps=2.5)
    with pytest.raises(cfg.ConfigError, match=r"clip_state = 'yes': expected bool"):
        WorldModelConfig(clip_state="yes")
    with pytest.raises(cfg.ConfigError, match=r"activation = 'rellu' is not allowed \(did you mean 'relu'\?\)"):
        WorldModelConfig(activation="rellu")
