"""How the four legs of an Ant team coordinate: gait diagrams and the cost of a mis-adapted partner.

Strategy fine-tuning (PAPER.md sections 1 and 7) is about agents adapting their behaviour to each
other. On the four-agent Ant that adaptation is a *gait*: which feet are on the ground when.
This module measures it from MuJoCo contacts, for trained teams and for the policies that made a
dataset, and asks what a leg that did not adapt costs.

* `episode_gait`: one episode's feet on the floor (T, 4) (`momawb.domains.ant.foot_contacts`, from
  the recorded qpos/qvel) and the torso's forward speed (T,) (state index 13, world x, m/s).
* `gait_stats`: per leg, the duty factor (fraction of steps on the ground) and touchdowns per
  second (stride frequency); per pair of legs, the fraction of steps in the same contact state
  (1 = in phase, 0 = in anti-phase: a trot has diagonal pairs near 1 and lateral ones near 0);
  the mean forward speed.
* `team_gaits` (greedy episodes of a team) and `dataset_gaits` (episodes of a dataset with
  qpos/qvel, e.g. the medium and expert policies' data);
* `gait_figure`: one gait diagram per team (feet on the ground as bars, one colour per leg as in
  the frames, `momawb.domains.ant_render.GROUP_RGBA`) with the forward speed beneath;
* `swap_costs`: the team's score when one agent is replaced by that agent of ``partner`` (the
  dataset's behaviour-cloned policy of that leg: an agent that never adapted to these partners),
  one agent at a time (`momawb.evaluation.swap_agent`).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from momawb.evaluation import evaluate, swap_agent

__all__ = ["DT", "SPEED_INDEX", "episode_gait", "gait_stats", "team_gaits", "dataset_gaits", "gait_figure",
           "gait_table", "swap_costs"]

DT = 0.05           # s per env step (Ant-v5: frame_skip 5 x timestep 0.01)
SPEED_INDEX = 13    # torso vx in the 27-d state (momawb.domains.ant's state table)
LEGS = ("leg 1 (agent_0)", "leg 2 (agent_1)", "leg 3 (agent_2)", "leg 4 (agent_3)")


def episode_gait(qpos: np.ndarray, qvel: np.ndarray, states: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Feet on the floor ``contacts`` (T, 4) bool and forward ``speed`` (T,) m/s of one episode
    (qpos (T, 15), qvel (T, 14) of its steps; ``states`` (T, 27) optional, else rebuilt)."""
    from momawb.domains.ant import foot_contacts
    qpos, qvel = np.asarray(qpos, np.float64), np.asarray(qvel, np.float64)
    if qpos.ndim != 2 or qpos.shape[1] != 15 or qvel.shape != (len(qpos), 14):
        raise ValueError(f"expected qpos (T, 15) and qvel (T, 14) of one Ant episode, got {qpos.shape}, {qvel.shape}")
    speed = qvel[:, 0] if states is None else np.asarray(states)[:, SPEED_INDEX]
    return {"contacts": foot_contacts(qpos, qvel), "speed": np.asarray(speed, np.float64)}


def gait_stats(gaits: Sequence[Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """Summary over episodes (every step of every episode weighs the same): ``duty`` (4,),
    ``touchdowns_per_s`` (4,), ``in_phase`` (4, 4), ``speed`` (mean forward m/s), ``steps``."""
    if not gaits:
        raise ValueError("gait_stats needs at least one episode")
    c = np.concatenate([g["contacts"] for g in gaits]).astype(bool)
    downs = np.sum([(np.diff(g["contacts"].astype(np.int8), axis=0) == 1).sum(0) for g in gaits], axis=0)
    seconds = DT * sum(max(len(g["contacts"]) - 1, 1) for g in gaits)
    same = (c[:, :, None] == c[:, None, :]).mean(0)
    return {"duty": c.mean(0), "touchdowns_per_s": downs / seconds, "in_phase": same,
            "speed": float(np.concatenate([g["speed"] for g in gaits]).mean()), "steps": int(len(c))}


def _episodes(traj: Mapping[str, np.ndarray], n: int | None) -> list[dict[str, np.ndarray]]:
    out = []
    for e in range(len(traj["alive"]) if n is None else min(n, len(traj["alive"]))):
        t = int(traj["alive"][e].sum())
        out.append(episode_gait(traj["qpos"][e, :t], traj["qvel"][e, :t], traj["states"][e, :t]))
    return out


def team_gaits(team, domain, episodes: int = 5, seed: int = 10_101, device=None) -> dict[str, Any]:
    """Greedy episodes of ``team`` in ``domain`` (an Ant domain): ``gaits`` (one `episode_gait`
    per episode), ``stats`` (`gait_stats`), ``scores`` (E,), and the recorded ``qpos``/``qvel``
    (for frames)."""
    res = evaluate(team, domain, episodes=episodes, seed=seed, device=device, record=True)
    tr = res.trajectories
    if "qpos" not in tr:
        raise ValueError(f"domain {domain.name!r} records no simulator state: gaits need the Ant domain")
    gaits = _episodes(tr, None)
    return {"gaits": gaits, "stats": gait_stats(gaits), "scores": res.scores, "qpos": tr["qpos"],
            "qvel": tr["qvel"], "alive": tr["alive"]}


def dataset_gaits(dataset, episodes: int = 5, seed: int = 0, min_length: int = 100) -> dict[str, Any]:
    """Gaits of ``episodes`` episodes of a dataset (drawn among those of at least ``min_length``
    steps; needs ``infos/qpos``/``infos/qvel``, which momawb's Ant datasets and D4RL's store)."""
    if dataset.qpos is None or dataset.qvel is None:
        raise ValueError(f"{dataset.source} has no infos/qpos and infos/qvel: its gait cannot be rebuilt")
    bounds = dataset.episode_bounds()
    long = bounds[bounds[:, 1] - bounds[:, 0] >= min_length]
    if len(long) == 0:
        raise ValueError(f"{dataset.source}: no episode of {min_length} steps or more")
    pick = np.random.default_rng(seed).choice(len(long), min(episodes, len(long)), replace=False)
    gaits = [episode_gait(dataset.qpos[a:b], dataset.qvel[a:b], dataset.observations[a:b])
             for a, b in long[np.sort(pick)]]
    return {"gaits": gaits, "stats": gait_stats(gaits)}


def gait_figure(gaits: Mapping[str, Mapping[str, np.ndarray]], steps: int = 120, title: str = ""):
    """One gait diagram per entry of ``gaits`` (name -> an `episode_gait`): for each leg, a bar
    where its foot is on the ground over the first ``steps`` steps (time in s), the torso's
    forward speed below it."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from momawb.domains.ant_render import GROUP_RGBA

    names = list(gaits)
    fig = make_subplots(rows=2 * len(names), cols=1, shared_xaxes=True, vertical_spacing=0.02,
                        row_heights=[0.65, 0.35] * len(names),
                        subplot_titles=[x for n in names for x in (n, "")])
    for k, name in enumerate(names):
        g = gaits[name]
        c, v = np.asarray(g["contacts"])[:steps], np.asarray(g["speed"])[:steps]
        t = DT * np.arange(len(c))
        for leg in range(4):
            color = "rgb({},{},{})".format(*(int(255 * x) for x in GROUP_RGBA[leg][:3]))
            y = np.where(c[:, leg], 4 - leg, np.nan)
            fig.add_trace(go.Scatter(x=t, y=y, mode="lines", line=dict(color=color, width=9), name=LEGS[leg],
                                     legendgroup=LEGS[leg], showlegend=k == 0, connectgaps=False), 2 * k + 1, 1)
        fig.add_trace(go.Scatter(x=t, y=v, mode="lines", line=dict(color="#444", width=1.2), name="forward speed",
                                 legendgroup="speed", showlegend=k == 0), 2 * k + 2, 1)
        fig.update_yaxes(tickvals=[4, 3, 2, 1], ticktext=["leg 1", "leg 2", "leg 3", "leg 4"], range=[0.5, 4.5],
                         row=2 * k + 1, col=1)
        fig.update_yaxes(title_text="m/s", row=2 * k + 2, col=1)
    fig.update_xaxes(title_text="time (s)", row=2 * len(names), col=1)
    fig.update_layout(title=title or "gait diagrams: feet on the ground (bars) and forward speed",
                      height=max(320, 230 * len(names)), margin=dict(l=60, r=20, t=60, b=40))
    return fig


def gait_table(stats: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Rows [name, speed, duty per leg, touchdowns/s, diagonal and lateral pairs in phase] for
    `momawb.tables.to_html`/`to_markdown`. Legs 1-3 and 2-4 are the diagonal pairs (the table of
    `momawb.domains.ant`: leg 1 front left, 2 back left, 3 back right, 4 front right)."""
    rows = [["team", "forward speed (m/s)", "duty factor legs 1-4", "touchdowns/s", "diagonal pairs in phase",
             "lateral pairs in phase"]]
    for name, s in stats.items():
        p = s["in_phase"]
        rows.append([name, f"{s['speed']:.2f}", " / ".join(f"{d:.2f}" for d in s["duty"]),
                     f"{np.mean(s['touchdowns_per_s']):.2f}", f"{(p[0, 2] + p[1, 3]) / 2:.2f}",
                     f"{(p[0, 1] + p[2, 3]) / 2:.2f}"])
    return rows


def swap_costs(team, partner, domain, episodes: int = 10, seed: int = 10_101, device=None) -> dict[str, Any]:
    """The cost of a mis-adapted partner: the team's mean normalised score alone and with agent i
    replaced by agent i of ``partner`` (e.g. the behaviour-cloned policies of the dataset), for
    each i; ``drop`` (N,) = team score - swapped score."""
    base = evaluate(team, domain, episodes=episodes, seed=seed, device=device).score
    swapped = np.array([evaluate(swap_agent(team, partner, i, domain.n_agents), domain, episodes=episodes,
                                 seed=seed, device=device).score for i in range(domain.n_agents)])
    return {"team": float(base), "swapped": swapped, "drop": base - swapped}
