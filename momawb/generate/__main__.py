"""Generate (or load from the cache) a named dataset outside a notebook, and print its returns.

    python -m momawb.generate ant --dataset medium --preset cpu
    python -m momawb.generate reacher --dataset expert-mix --preset ci
    python -m momawb.generate game --dataset neutral

``--preset`` takes the generator section of ``params/<notebook>/<preset>.yaml`` (the same
dataset, and cache file, as the notebook at that preset; without it: the config's defaults,
the paper's scale). A killed Ant generation run again resumes (`momawb.generate.ant`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from momawb import config as cfg
from momawb import domains
from momawb.generate import GENERATORS, generator_module, named_dataset

#: domain -> the notebook whose params/ folder holds its presets
NOTEBOOK_OF = {"game": "coordination_game", "reacher": "reacher", "ant": "ant"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m momawb.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("domain", choices=sorted(GENERATORS))
    parser.add_argument("--dataset", required=True, help="a named dataset of the domain (e.g. medium)")
    parser.add_argument("--preset", default=None, help="ci, cpu, gpu, ...: its generator section is used")
    parser.add_argument("--seed", type=int, default=None, help="another sample (default: the config's seed)")
    parser.add_argument("--root", default=None,
                        help="outputs folder (default: $MOMAWB_OUTPUTS, else the checkout's outputs/)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes that may share the generation (Reacher: expert seeds trained at once; "
                             "the same dataset as 1); default: one per core")
    args = parser.parse_args(argv)
    module = generator_module(args.domain)
    if args.dataset not in module.DATASETS:
        parser.error(f"unknown {args.domain} dataset {args.dataset!r}; known: {', '.join(module.DATASETS)}")
    overrides = {}
    if args.preset is not None:
        try:
            data, _ = cfg.read_preset(NOTEBOOK_OF[args.domain], args.preset)
        except cfg.ConfigError as e:
            parser.error(str(e))
        overrides = {k: v for k, v in (data.get(GENERATORS[args.domain][1]) or {}).items() if k not in ("name", "seed")}
    t0 = time.perf_counter()
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    ds = named_dataset(args.domain, args.dataset, root=args.root, seed=args.seed, progress=True,
                       workers=args.workers, **overrides)
    wall = time.perf_counter() - t0
    domain = domains.make(args.domain).for_dataset(ds)
    d = ds.describe(domain)
    print(f"{ds.source}\n{d['transitions']:,} transitions, {d['episodes']:,} episodes, mean return "
          f"{d['return_mean']:.1f}; normalised (references random {domain.reference_returns[0]:.1f}, expert "
          f"{domain.reference_returns[1]:.1f}) min / mean / median / max = "
          + " / ".join(f"{100 * d[k]:.1f} %" for k in ("score_min", "score_mean", "score_median", "score_max")))
    default = domains.make(args.domain)
    if default.reference_returns != domain.reference_returns:
        s = default.normalize(ds.episode_returns())
        print(f"with the domain's default references {default.reference_returns}: " +
              " / ".join(f"{100 * f(s):.1f} %" for f in (np.min, np.mean, np.median, np.max)))
    print(f"wall time {wall:.0f} s (0 when it was cached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
