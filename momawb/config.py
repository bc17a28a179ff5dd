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

What a field accepts beyond its exact type (the forms users write in YAML and papermill):

* numeric strings for numbers: PyYAML reads YAML 1.1, where ``lr: 1e-3`` is the *string*
  ``'1e-3'``; ``'1e-3'``, ``'300'`` and ``'1e5'`` are taken as numbers;
* integral floats for integers (``steps: 1.0e+5``, ``-p seeds 2.0``); ``2.5`` is refused;
* one value where a list is expected (``-p datasets neutral`` is ``('neutral',)``), and a list
  written as one string, ``'[ibc, iql]'`` or ``'ibc,iql'`` (papermill ``-p`` passes strings);
* floats must be finite (``-inf``, ``'inf'``, NaN are refused) unless the field is declared with
  ``param(..., allow_inf=True)`` (e.g. ``l_eps = inf``: no adaptive rollouts);
* a field named ``device`` takes ``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:<i>'`` or ``'mps'``.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import importlib
import math
import re
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["ConfigError", "Config", "param", "register", "SECTIONS", "params_dir",
           "read_preset", "load", "build", "check_value", "section_class", "check_section", "preset_names",
           "unknown"]

PARAMS_DIR = Path(__file__).resolve().parent.parent / "params"

#: section name -> "module:Class"; modules are imported only when their section is used.
SECTIONS: dict[str, str] = {
    "generator": "momawb.generate:GameDatasetConfig",
    "reacher_generator": "momawb.generate.reacher:ReacherDatasetConfig",
    "ant_generator": "momawb.generate.ant:AntDatasetConfig",
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
          allow_inf: bool = False, default_factory: Any = MISSING) -> Any:
    """A dataclass field with a docstring and a checked range or set of choices (each element
    of a list field is checked). Floats must be finite unless ``allow_inf``."""
    meta = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "allow_inf": allow_inf}
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


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$", re.IGNORECASE)


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a number or a numeric string (YAML 1.1 reads ``1e-3`` as
    a string), else None. Booleans are not numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        return float(value.strip())
    return None


def _split_list(text: str) -> list:
    """A list written as one string (papermill ``-p methods '[ibc, iql]'`` passes a string):
    YAML flow syntax ``[a, b]``, else comma-separated ``a,b``, else one element ``[text]``."""
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        try:
            parsed = yaml.safe_load(t)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, list):
            return parsed
    if "," in t:
        return [p.strip() for p in t.split(",") if p.strip()]
    return [text]


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
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        num = _number(value)
        if num is not None and math.isfinite(num) and num == int(num):
            return True, int(num)
        return False, value
    if tp is float:
        num = _number(value)
        return (True, num) if num is not None else (False, value)
    if tp is str:
        return isinstance(value, str), value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = _split_list(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]  # one value where a list is expected: a one-element list
        if not isinstance(value, (tuple, list)):
            return False, value
        args = typing.get_args(tp)
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        if fixed and len(args) != len(value):
            return False, value
        arm = args[0] if args else Any
        out = []
        for i, v in enumerate(value):
            ok, cv = _type_ok(v, args[i] if fixed else arm)
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

    #: how errors name the owner of a field (None: the class name, as in ``IQLConfig.lr``)
    label: typing.ClassVar[str | None] = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_value(type(self), f.name, getattr(self, f.name)))

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def qualname(cls, name: str) -> str:
        """How errors name field ``name``: ``IQLConfig.lr`` (or ``<label> 'lr'``)."""
        return f"{cls.label} {name!r}" if cls.label else f"{cls.__name__}.{name}"

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints.get(f.name, Any)) for f in dataclasses.fields(cls)}


def check_value(cls: type[Config], name: str, value: Any) -> Any:
    """``value`` checked against field ``name`` of ``cls`` (type, range, choices) and coerced
    (numeric strings, one value for a list); raises `ConfigError` naming the field, the value
    and the allowed form."""
    f, tp = _fields(cls)[name]
    ok, coerced = _type_ok(value, tp)
    if not ok:
        raise ConfigError(f"{cls.qualname(name)} = {value!r}: expected {_type_name(tp)}"
                          + ("" if _allowed(f.metadata).startswith("any") else f", allowed: {_allowed(f.metadata)}"))
    _check_range(cls.qualname(name), f, coerced)
    return coerced


def _type_name(tp: Any) -> str:
    """'int', 'float or None', 'a list of str' ..."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "None"
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _check_range(qualname: str, f: dataclasses.Field, value: Any) -> None:
    m = f.metadata
    if f.name == "device" and isinstance(value, str) and not _DEVICE.match(value):
        raise ConfigError(f"{qualname} = {value!r} is not a device; allowed: 'auto', 'cpu', 'cuda', "
                          "'cuda:<index>' or 'mps'")
    values = value if isinstance(value, (tuple, list)) else (value,)
    rng = _allowed(m)
    for v in values:
        if m.get("choices") is not None and v not in m["choices"]:
            hint = difflib.get_close_matches(str(v), [str(c) for c in m["choices"]], n=1)
            raise ConfigError(f"{qualname} = {value!r} is not allowed" +
                              (f" (did you mean {hint[0]!r}?)" if hint else "") + f": {rng}")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(f"{qualname} is NaN; allowed: {rng}")
        if isinstance(v, float) and math.isinf(v) and not m.get("allow_inf"):
            raise ConfigError(f"{qualname} = {value!r} is not finite; allowed: a finite number"
                              + ("" if rng.startswith("any") else f" {rng}"))
        bad = ((m.get("gt") is not None and not v > m["gt"]) or (m.get("ge") is not None and not v >= m["ge"])
               or (m.get("lt") is not None and not v < m["lt"]) or (m.get("le") is not None and not v <= m["le"]))
        if bad:
            raise ConfigError(f"{qualname} = {value!r} is out of range; allowed: {rng}")


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
    st = path.stat()
    return copy.deepcopy(_parse_preset(path, st.st_mtime_ns, st.st_size)), path


@functools.lru_cache(maxsize=64)
def _parse_preset(path: Path, mtime_ns: int, size: int) -> dict:
    """The file's mapping, parsed once per (path, modification time, size): a sweep reads its
    preset several times per job (about 3 ms a parse); an edited file is parsed again."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def unknown(names, allowed, what: str, source: str) -> ConfigError:
    """The error for ``names`` not among ``allowed``: each with the nearest allowed name, if any
    ('{source}: unknown {what} 'x' (did you mean 'y'?)')."""
    parts = []
    for n in names:
        hint = difflib.get_close_matches(str(n), list(allowed), n=1)
        parts.append(f"{n!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
    return ConfigError(f"{source}: unknown {what} {', '.join(parts)}")


def check_section(section: str, source: str = "config") -> None:
    """Raise ConfigError naming the nearest known section when ``section`` is not one."""
    if section not in SECTIONS:
        raise ConfigError(f"{unknown([section], SECTIONS, 'section', source)}; known sections: "
                          f"{', '.join(sorted(SECTIONS))}")


def section_class(section: str) -> type[Config]:
    check_section(section)
    mod, name = SECTIONS[section].split(":")
    return getattr(importlib.import_module(mod), name)


def build(cls: type[Config], values: Mapping[str, Any] | None, source: str = "overrides") -> Config:
    """``cls(**values)`` with unknown keys and bad values reported against ``source``."""
    values = dict(values or {})
    known = cls.keys()
    unknown = [k for k in values if k not in known]
    if unknown:
        hints = {k: difflib.get_close_matches(str(k), known, n=1) for k in unknown}
        said = "; ".join(f"did you mean {h[0]!r} for {k!r}?" for k, h in hints.items() if h)
        raise ConfigError(f"unknown key(s) {unknown} for {cls.__name__} in {source}"
                          + (f" ({said})" if said else "") + f"; allowed keys: {', '.join(known)}")
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
