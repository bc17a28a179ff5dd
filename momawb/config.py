"""Configs: one dataclass per algorithm or generator, defaults = the paper's values.

A preset file ``params/<notebook>/<preset>.yaml`` holds the notebook's parameters at the top
level (``preset``, ``seeds``, ...) and one mapping per section (``world_model:``,
``moma_ppo:``, ``iql:``, ...) that *overrides* the dataclass defaults, never restates them.
The same file is papermill's ``-f`` input, so a notebook receives the sections as dicts.

Fields are declared with `param`, which carries the docstring and the allowed range::

    @register("world_model")
    @dataclass
    class WorldModelConfig(Config):
        lr: float = param(3e-5, "Adam learning rate (PAPER.md section 2)", gt=0)

`Config.__post_init__` checks every field (type, range, choices) so a bad value fails where it
is created; `load` adds the file name to the message. Errors name the key, the file and the
allowed values.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["ConfigError", "Config", "param", "register", "SECTIONS", "params_dir",
           "read_preset", "load", "preset_names"]

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"

#: section name -> "module:Class"; modules are imported only when their section is used.
SECTIONS: dict[str, str] = {
    "generator": "momawb.generate:GameDatasetConfig",
    "reacher_generator": "momawb.generate_reacher:ReacherDatasetConfig",
    "world_model": "momawb.world_model:WorldModelConfig",
    "moma_ppo": "momawb.moma_ppo:MomaPPOConfig",
    "iql": "momawb.baselines.iql:IQLConfig",
    "maiql": "momawb.baselines.iql:MAIQLConfig",
    "maiql_ft": "momawb.baselines.iql:MAIQLFTConfig",
    "ibc": "momawb.baselines.bc:BCConfig",
    "matd3bc": "momawb.baselines.td3bc:TD3BCConfig",
    "itd3bc": "momawb.baselines.td3bc:TD3BCConfig",
    "icql": "momawb.baselines.cql:CQLConfig",
    "iomar": "momawb.baselines.cql:OMARConfig",
}


class ConfigError(ValueError):
    """A parameter is unknown, of the wrong type or out of range."""


def param(default: Any = MISSING, doc: str = "", *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, choices: tuple | None = None,
          default_factory: Any = MISSING) -> Any:
    """A dataclass field with a docstring and a checked range or set of choices."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def register(section: str):
    """Class decorator recording which preset section a config reads."""
    def deco(cls):
        cls.section = section
        return cls
    return deco


def _allowed(meta: Mapping) -> str:
    if meta.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    parts = []
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{sym} {meta[key]}")
    return " and ".join(parts) if parts else "any value of that type"


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check ``value`` against annotation ``tp``; return (ok, possibly-coerced value)."""
    if tp is Any:
        return True, value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            ok, v = _type_ok(value, arm)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, str) and value.strip().lower() in ("inf", "+inf", "-inf", "infinity"):
            return True, float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False, value
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            return False, value
        arm = args[0] if args else Any
        out = []
        for i, v in enumerate(value):
            ok, cv = _type_ok(v, args[i] if origin is tuple and args and args[-1] is not Ellipsis else arm)
            if not ok:
                return False, value
            out.append(cv)
        return True, tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    return True, value


@dataclass
class Config:
    """Base class: validates every field on creation."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            ok, value = _type_ok(value, hints.get(f.name, Any))
            if not ok:
                raise ConfigError(f"{type(self).__name__}.{f.name} = {value!r}: expected "
                                  f"{_type_name(hints.get(f.name))}, allowed: {_allowed(f.metadata)}")
            object.__setattr__(self, f.name, value)
            _check_range(type(self).__name__, f, value)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_range(owner: str, f: dataclasses.Field, value: Any) -> None:
    m = f.metadata
    values = value if isinstance(value, (tuple, list)) else (value,)
    for v in values:
        if m.get("choices") is not None and v not in m["choices"]:
            raise ConfigError(f"{owner}.{f.name} = {value!r} is not allowed: {_allowed(m)}")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(f"{owner}.{f.name} is NaN; allowed: {_allowed(m)}")
        bad = ((m.get("gt") is not None and not v > m["gt"]) or (m.get("ge") is not None and not v >= m["ge"])
               or (m.get("lt") is not None and not v < m["lt"]) or (m.get("le") is not None and not v <= m["le"]))
        if bad:
            raise ConfigError(f"{owner}.{f.name} = {value!r} is out of range; allowed: {_allowed(m)}")


def params_dir() -> Path:
    return PARAMS_DIR


def preset_names(notebook: str) -> list[str]:
    return sorted(p.stem for p in (PARAMS_DIR / notebook).glob("*.yaml"))


def read_preset(notebook: str, preset: str) -> tuple[dict, Path]:
    """The raw mapping in ``params/<notebook>/<preset>.yaml`` and its path."""
    path = PARAMS_DIR / notebook / f"{preset}.yaml"
    if not path.exists():
        have = preset_names(notebook)
        raise ConfigError(f"no preset file {path}; presets for {notebook!r}: {have or 'none'}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(data).__name__}")
    return data, path


def section_class(section: str) -> type[Config]:
    if section not in SECTIONS:
        raise ConfigError(f"unknown section {section!r}; known sections: {', '.join(sorted(SECTIONS))}")
    mod, name = SECTIONS[section].split(":")
    return getattr(importlib.import_module(mod), name)


def build(cls: type[Config], values: Mapping[str, Any] | None, source: str = "overrides") -> Config:
    """``cls(**values)`` with unknown keys and bad values reported against ``source``."""
    values = dict(values or {})
    known = cls.keys()
    unknown = [k for k in values if k not in known]
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} for {cls.__name__} in {source}; "
                          f"allowed keys: {', '.join(known)}")
    try:
        return cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{e} (in {source})") from None


def load(cls: type[Config], notebook: str | None = None, preset: str | None = None,
         overrides: Mapping[str, Any] | None = None, section: str | None = None) -> Config:
    """The config ``cls`` for ``section`` of ``params/<notebook>/<preset>.yaml``, then overrides."""
    section = section or getattr(cls, "section", None)
    values: dict = {}
    source = "defaults"
    if notebook and preset:
        data, path = read_preset(notebook, preset)
        sec = data.get(section, {}) or {}
        if not isinstance(sec, Mapping):
            raise ConfigError(f"section {section!r} in {path} must be a mapping, got {sec!r}")
        build(cls, sec, f"{path} [{section}]")
        values.update(sec)
        source = f"{path} [{section}]"
    if overrides:
        build(cls, overrides, "overrides")
        values.update(overrides)
        source += " + overrides"
    return build(cls, values, source)


def validate_preset_file(path: Path, notebook_keys: Mapping[str, Any]) -> None:
    """Check every key of a preset file: sections through their dataclass, the rest against
    ``notebook_keys`` (name -> example value whose type is expected)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for key, value in data.items():
        if key in SECTIONS:
            build(section_class(key), value, f"{path} [{key}]")
        elif key in notebook_keys:
            expected = notebook_keys[key]
            if expected is not None and not isinstance(value, type(expected)) and not (
                    isinstance(expected, float) and isinstance(value, int)):
                raise ConfigError(f"{path}: key {key!r} = {value!r} should be a "
                                  f"{type(expected).__name__} like {expected!r}")
        else:
            raise ConfigError(f"{path}: unknown key {key!r}; allowed: notebook parameters "
                              f"{sorted(notebook_keys)} or sections {sorted(SECTIONS)}")
