"""Episode frames: what a trained team does, as images, a strip or an animated GIF.

Frames are rendered headless by MuJoCo (``MUJOCO_GL=egl``, else OSMesa; see
`momawb.domains.reacher`) from recorded episodes (`momawb.evaluation.evaluate` with
``record=True``), re-posed in one render model instead of being re-simulated: Reacher's state
(cos, sin, target, velocities) fixes the arm's pose; the Ant is re-posed from the recorded
qpos/qvel (`momawb.domains.ant.ant_frames`). `team_viewer` is the notebook widget: pick a trained
team and an evaluation episode, watch it; `ReacherView` and `AntView` say what it shows.
"""
from __future__ import annotations

import io
from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = ["reacher_frames", "thumbnail", "strip_png", "gif", "episode_of", "ReacherView", "AntView", "team_viewer"]


def reacher_frames(states: np.ndarray, every: int = 1, size: int = 160) -> list[np.ndarray]:
    """RGB frames (size, size, 3) of the Reacher states (T, 10), every ``every``-th step."""
    from momawb.domains import reacher
    env = reacher.TwoAgentReacherEnv(render_mode="rgb_array", width=size, height=size)
    try:
        env.reset(seed=0)
        qpos, qvel = reacher.sim_state_from_states(np.asarray(states)[::every])
        frames = []
        for q, v in zip(qpos, qvel):
            env.reacher.set_state(q, v)
            frames.append(np.asarray(env.render()).copy())
        return frames
    finally:
        env.close()


def thumbnail(frame: np.ndarray, size: int) -> np.ndarray:
    """A frame scaled to ``size`` pixels wide (the strip's thumbnails)."""
    from PIL import Image
    img = Image.fromarray(np.asarray(frame, np.uint8))
    return np.asarray(img.resize((size, max(1, round(img.height * size / img.width)))))


def strip_png(frames: Sequence[np.ndarray], labels: Sequence[str] | None = None) -> bytes:
    """The frames side by side as one PNG (optional label in each frame's corner)."""
    from PIL import Image, ImageDraw
    h, w = frames[0].shape[:2]
    img = Image.new("RGB", (w * len(frames) + 2 * (len(frames) - 1), h), "white")
    for i, f in enumerate(frames):
        tile = Image.fromarray(np.asarray(f, np.uint8))
        if labels:
            ImageDraw.Draw(tile).text((4, 2), labels[i], fill=(255, 255, 255))
        img.paste(tile, (i * (w + 2), 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def gif(frames: Sequence[np.ndarray], fps: int = 25) -> bytes:
    """An animated, looping GIF of the frames."""
    from PIL import Image
    imgs = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
    return buf.getvalue()


def episode_of(team, domain, episodes: int = 20, seed: int = 10_101) -> dict:
    """Greedy episodes of ``team`` with their convention labels (`momawb.conventions`):
    ``states`` (E, T, 10) and ``labels`` (one dict per episode)."""
    from momawb import conventions
    from momawb.evaluation import evaluate
    res = evaluate(team, domain, episodes=episodes, seed=seed, record=True)
    tr = res.trajectories
    labels = conventions.label_episodes(tr["states"], tr["actions"], tr["alive"])
    return {"states": tr["states"], "labels": labels, "returns": res.returns}


class ReacherView:
    """What `team_viewer` shows of a Reacher team: its episodes' elbow conventions."""

    every = 2

    def rollout(self, team, domain, episodes: int) -> dict:
        return episode_of(team, domain, episodes=episodes)

    def frames(self, out: dict, e: int, size: int, every: int = 1) -> list[np.ndarray]:
        return reacher_frames(out["states"][e], every=every, size=size)

    def describe(self, out: dict, e: int) -> str:
        label = out["labels"][e]
        counts = {k: sum(lb["name"] == k for lb in out["labels"]) for k in ("ccw", "cw", "miscoordinated")}
        return (f"{label['name']}, return {out['returns'][e]:.2f}, torques fighting on "
                f"{label['fight_fraction']:.0%} of steps. <b>Team over {len(out['labels'])} episodes</b>: {counts}")


class AntView:
    """What `team_viewer` shows of a four-agent Ant team: the episode's frames (the torso agent's
    leg in yellow under partial observability), score, forward speed and duty factors
    (`momawb.gait`)."""

    every = 5

    def rollout(self, team, domain, episodes: int) -> dict:
        from momawb.gait import team_gaits
        out = team_gaits(team, domain, episodes=episodes)
        out["highlight"] = 0 if domain.info.get("torso_agent") else None
        return out

    def frames(self, out: dict, e: int, size: int, every: int = 1) -> list[np.ndarray]:
        from momawb.domains.ant import ant_frames
        t = int(out["alive"][e].sum())
        return list(ant_frames(out["qpos"][e, :t], out["qvel"][e, :t], size=size, highlight=out["highlight"],
                               every=every))

    def describe(self, out: dict, e: int) -> str:
        g = out["gaits"][e]
        duty = " / ".join(f"{d:.2f}" for d in g["contacts"].mean(0))
        return (f"score {out['scores'][e]:.2f}, {len(g['speed'])} steps, forward speed {g['speed'].mean():.2f} m/s, "
                f"duty factors of legs 1-4 {duty}. <b>Team over {len(out['scores'])} episodes</b>: mean score "
                f"{np.mean(out['scores']):.2f}")


def team_viewer(rows: Sequence[Mapping], load_team: Callable[[Mapping], object],
                make_domain: Callable[[Mapping], object], display: Mapping[str, str] | None = None,
                episodes: int = 20, size: int = 320, live: bool = True, view=None):
    """Widget: pick a trained team (method, setting, seed) and one of its greedy evaluation
    episodes; shows the animation, a frame strip and what ``view`` says of the episode
    (`ReacherView`, the default: its elbow convention; `AntView`: speed and duty factors).

    ``load_team(row)`` rebuilds a row's team from its checkpoint; ``make_domain(row)`` gives
    the row's domain (its observation setting). Frames are rendered at ``size`` pixels and
    shown at that size (never stretched). With ``live`` False (an executed file: no kernel
    behind the widget) it returns the first team's first episode as a plain HTML output.
    """
    display = display or {}
    view = view or ReacherView()
    keyed = {f"{display.get(r['method'], r['method'])} | {r.get('task', '')} | seed {r['seed']}": r for r in rows}
    cache: dict[str, dict] = {}

    def show(key: str, e: int) -> tuple[bytes, bytes, str]:
        if key not in cache:
            row = keyed[key]
            cache[key] = view.rollout(load_team(row), make_domain(row), episodes)
        out = cache[key]
        frames = view.frames(out, e, size, view.every)
        idx = np.linspace(0, len(frames) - 1, 6).astype(int)
        small = [np.asarray(thumbnail(frames[i], size // 2)) for i in idx]
        info = f"<b>{key}, episode {e}</b>: " + view.describe(out, e)
        return gif(frames), strip_png(small, [f"t={view.every * i}" for i in idx]), info

    if not keyed:
        return None
    if not live:
        import base64
        from IPython.display import HTML
        first = sorted(keyed)[0]
        anim, strip, info = show(first, 0)
        b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
        return HTML(f"<p>{info}<br><small>(in JupyterLab a widget picks any team and episode)</small></p>"
                    f"<img src='data:image/gif;base64,{b64(anim)}' width='{size}' height='{size}'><br>"
                    f"<img src='data:image/png;base64,{b64(strip)}'>")
    import ipywidgets as W
    pick = W.Dropdown(options=sorted(keyed), description="team", layout=W.Layout(width="420px"))
    ep = W.IntSlider(value=0, min=0, max=episodes - 1, description="episode", continuous_update=False)
    anim = W.Image(format="gif", width=str(size), height=str(size), layout=W.Layout(width=f"{size}px",
                                                                                  height=f"{size}px"))
    strip, info = W.Image(format="png", layout=W.Layout(width="auto")), W.HTML()

    def refresh(_=None) -> None:
        if pick.value is None:
            return
        info.value = "rolling out the team..."
        anim.value, strip.value, info.value = show(pick.value, ep.value)

    pick.observe(refresh, "value")
    ep.observe(refresh, "value")
    refresh()
    return W.VBox([W.HBox([pick, ep]), info, anim, strip])
