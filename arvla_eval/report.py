"""Evaluation report: closed-loop records of several policies -> report.md + report.html + plots.

Input is a list of ``EpisodeRecord`` (``arvla_eval.records``) of any policies ("ar", "chunk",
"chunk_te", ...), tasks and seeds. Output, in one directory that can be zipped or served as is:

- ``report.md`` and ``report.html`` (no external assets, no scripts: images are files next to
  it), one table row per policy x task: success rate with its 95 % Wilson interval, time to
  success, RMS jerk, SPARC, peak joint velocity / acceleration of the MEASURED trajectory (raw
  joint samples at their stamps on a control-period grid, ``records.measured_metrics``), RMS
  jerk of the commanded targets, prefix staleness p50/p95, step latency p50/p99;
- plots (matplotlib, Agg backend, so it runs headless): joint trajectories of the policies
  overlaid for one task and seed (the chunk boundaries of a reactive head show as kinks there),
  per-episode RMS jerk per policy, success per task with the intervals, staleness histograms;
- an animated GIF per policy of the first episode that carries camera frames.

Pure numpy/matplotlib, no ROS: the same report comes out of a sim run, a test with synthetic
records or records loaded from disk.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import math
import pathlib
from typing import Sequence

import numpy as np

from arvla_eval.records import EpisodeRecord, measured_metrics, summarize

__all__ = ["ReportRow", "report_rows", "rows_markdown", "write_report"]

# One colour per policy, stable across plots (tab10, the AR expert first when present).
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf"]
GIF_MAX_FRAMES = 120


@dataclasses.dataclass(frozen=True)
class ReportRow:
    """Metrics of one policy on one task (NaN = not defined, e.g. no success / no movement)."""

    policy: str
    task: str
    n: int
    successes: int
    success_rate: float
    ci_low: float
    ci_high: float
    time_to_success_s: float      # mean over successful episodes
    rms_jerk: float               # mean over episodes, measured joints, rad/s^3
    rms_jerk_ci95: float          # half-width of the mean's 95 % interval
    sparc: float                  # mean over episodes (closer to 0 = smoother)
    command_jerk: float           # mean over episodes, RMS jerk of the commanded targets, rad/s^3
    peak_velocity: float          # mean over episodes of the per-episode peak, rad/s
    peak_acceleration: float      # same, rad/s^2
    staleness_p50: float          # steps, over ticks with a prefix
    staleness_p95: float
    latency_p50_ms: float         # over ticks that ran the model
    latency_p99_ms: float


def _policies(records: Sequence[EpisodeRecord]) -> list[str]:
    seen = list(dict.fromkeys(r.policy for r in records))
    return sorted(seen, key=lambda p: (p != "ar", seen.index(p)))


def _colors(policies: Sequence[str]) -> dict[str, str]:
    return {p: _PALETTE[i % len(_PALETTE)] for i, p in enumerate(policies)}


def _peaks(rec: EpisodeRecord) -> tuple[float, float]:
    m = measured_metrics(rec)
    return (m.peak_velocity, m.peak_acceleration) if m else (math.nan, math.nan)


def _mean(values: Sequence[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return float(np.mean(vals)) if vals else math.nan


def report_rows(records: Sequence[EpisodeRecord]) -> list[ReportRow]:
    """One row per (policy, task); policies ordered AR first, tasks by first appearance."""
    if not records:
        raise ValueError("report_rows: no records given")
    order = {p: i for i, p in enumerate(_policies(records))}
    rows = []
    for s in sorted(summarize(records), key=lambda s: order[s.policy]):
        recs = [r for r in records if r.policy == s.policy and r.task == s.task]
        peaks = [_peaks(r) for r in recs]
        nan = math.nan
        rows.append(ReportRow(
            policy=s.policy, task=s.task, n=s.success.n, successes=s.success.successes,
            success_rate=s.success.rate, ci_low=s.success.ci_low, ci_high=s.success.ci_high,
            time_to_success_s=s.time_to_success.mean_s, rms_jerk=s.rms_jerk,
            rms_jerk_ci95=s.rms_jerk_ci95, sparc=s.sparc,
            command_jerk=s.command_jerk,
            peak_velocity=_mean([p[0] for p in peaks]),
            peak_acceleration=_mean([p[1] for p in peaks]),
            staleness_p50=s.staleness.p50 if s.staleness else nan,
            staleness_p95=s.staleness.p95 if s.staleness else nan,
            latency_p50_ms=s.step_latency.p50 * 1e3 if s.step_latency else nan,
            latency_p99_ms=s.step_latency.p99 * 1e3 if s.step_latency else nan))
    return rows


_HEADER = ["policy", "task", "success", "95% CI", "time to success (s)", "RMS jerk ± 95% CI (rad/s³)",
           "SPARC", "peak vel (rad/s)", "peak acc (rad/s²)", "RMS jerk of commands (rad/s³)",
           "staleness p50/p95 (steps)", "step latency p50/p99 (ms)"]


def _fmt(x: float, spec: str) -> str:
    return "–" if not math.isfinite(x) else format(x, spec)


def _cells(r: ReportRow) -> list[str]:
    return [r.policy, r.task, f"{r.successes}/{r.n} ({r.success_rate:.0%})",
            f"{r.ci_low:.2f}–{r.ci_high:.2f}", _fmt(r.time_to_success_s, ".2f"),
            f"{_fmt(r.rms_jerk, '.1f')} ± {_fmt(r.rms_jerk_ci95, '.1f')}", _fmt(r.sparc, ".2f"),
            _fmt(r.peak_velocity, ".2f"),
            _fmt(r.peak_acceleration, ".1f"), _fmt(r.command_jerk, ".1f"),
            f"{_fmt(r.staleness_p50, '.0f')}/{_fmt(r.staleness_p95, '.0f')}",
            f"{_fmt(r.latency_p50_ms, '.2f')}/{_fmt(r.latency_p99_ms, '.2f')}"]


def rows_markdown(rows: Sequence[ReportRow]) -> str:
    """The metrics table as GitHub Markdown (also what ``arvla eval`` prints)."""
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless; harmless if already set
    import matplotlib.pyplot as plt

    return plt


def _pick_overlay(records: Sequence[EpisodeRecord]) -> list[EpisodeRecord]:
    """Episodes of one (task, seed) that the most policies ran, AR first (for the overlay)."""
    groups: dict[tuple[str, int], dict[str, EpisodeRecord]] = {}
    for r in records:
        groups.setdefault((r.task, r.seed), {}).setdefault(r.policy, r)
    if not groups:
        return []
    key = max(groups, key=lambda k: (len(groups[k]), -list(groups).index(k)))
    order = _policies(records)
    return sorted(groups[key].values(), key=lambda r: order.index(r.policy))


def plot_trajectories(records: Sequence[EpisodeRecord], path: pathlib.Path,
                      colors: dict[str, str]) -> str | None:
    """Measured joint positions of the policies, one subplot per joint, same task and seed."""
    recs = _pick_overlay(records)
    if not recs:
        return None
    plt = _pyplot()
    names = recs[0].joint_names
    D = len(names)
    cols = min(D, 4)
    rows = math.ceil(D / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.4 * rows), squeeze=False,
                             sharex=True)
    for j in range(rows * cols):
        ax = axes[j // cols][j % cols]
        if j >= D:
            ax.axis("off")
            continue
        for r in recs:
            if r.joint_names != names:
                continue  # a policy on another robot: not comparable joint by joint
            ax.plot(r.times, r.positions[:, j], color=colors[r.policy], lw=1.4, label=r.policy)
            ax.plot(r.times, r.commands[:, j], color=colors[r.policy], lw=0.8, ls=":", alpha=0.8)
        ax.set_title(names[j], fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if j // cols == rows - 1:
            ax.set_xlabel("time (s)", fontsize=8)
    axes[0][0].set_ylabel("position (rad)", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, ncol=len(labels))
    fig.suptitle(f"{recs[0].task}, seed {recs[0].seed}: measured (solid) and commanded "
                 "(dotted) joint positions", fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"{recs[0].task}, seed {recs[0].seed}"


def plot_jerk(records: Sequence[EpisodeRecord], path: pathlib.Path,
              colors: dict[str, str]) -> bool:
    """Per-episode RMS jerk of the measured trajectory: a box per policy (points on top)."""
    policies = _policies(records)
    data = []
    for p in policies:
        jerks = [measured_metrics(r) for r in records if r.policy == p]
        data.append([m.rms_jerk for m in jerks if m is not None])
    if not any(data):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(policies), 3.4))
    keep = [i for i, d in enumerate(data) if d]
    box = ax.boxplot([data[i] for i in keep], positions=keep, widths=0.55, patch_artist=True,
                     showfliers=False, medianprops={"color": "black"})
    for patch, i in zip(box["boxes"], keep):
        patch.set_facecolor(colors[policies[i]])
        patch.set_alpha(0.35)
    rng = np.random.default_rng(0)
    for i in keep:
        x = i + rng.uniform(-0.12, 0.12, len(data[i]))
        ax.scatter(x, data[i], s=12, color=colors[policies[i]], zorder=3)
    ax.set_xticks(range(len(policies)), policies)
    ax.set_ylabel("RMS jerk (rad/s³), per episode")
    lo, hi = min(min(d) for d in data if d), max(max(d) for d in data if d)
    if lo > 0 and hi > 20 * lo:  # chunk boundaries can make jerk an order of magnitude larger
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Smoothness (lower is smoother)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_success(rows: Sequence[ReportRow], path: pathlib.Path, colors: dict[str, str]) -> None:
    """Success rate per task, one bar per policy, 95 % Wilson intervals as error bars."""
    plt = _pyplot()
    tasks = list(dict.fromkeys(r.task for r in rows))
    policies = list(dict.fromkeys(r.policy for r in rows))
    width = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(1.5 + 1.6 * len(tasks) * max(1, len(policies) / 2), 3.4))
    for k, p in enumerate(policies):
        for t_i, t in enumerate(tasks):
            r = next((r for r in rows if r.policy == p and r.task == t), None)
            if r is None:
                continue
            x = t_i - 0.4 + width * (k + 0.5)
            ax.bar(x, r.success_rate, width * 0.9, color=colors[p],
                   label=p if t_i == 0 or not any(
                       rr.policy == p and rr.task in tasks[:t_i] for rr in rows) else None)
            # Wilson bounds can sit a rounding error beyond the rate (0/n): clamp to >= 0
            ax.errorbar(x, r.success_rate, yerr=[[max(r.success_rate - r.ci_low, 0.0)],
                                                 [max(r.ci_high - r.success_rate, 0.0)]],
                        color="black", capsize=3, lw=1)
            ax.text(x, 0.02, f"{r.successes}/{r.n}", ha="center", va="bottom", fontsize=7,
                    color="white" if r.success_rate > 0.1 else "black")
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Success per task (95% Wilson interval)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_staleness(records: Sequence[EpisodeRecord], path: pathlib.Path,
                   colors: dict[str, str]) -> bool:
    """Share of control ticks at each prefix staleness (ticks without a prefix left out)."""
    policies = _policies(records)
    per = {p: np.concatenate([r.staleness_steps[r.staleness_steps >= 0] for r in records
                              if r.policy == p] or [np.zeros(0, np.int64)]) for p in policies}
    per = {p: v for p, v in per.items() if v.size}
    if not per:
        return False
    plt = _pyplot()
    hi = int(max(v.max() for v in per.values()))
    values = np.arange(hi + 1)
    width = 0.8 / len(per)
    fig, ax = plt.subplots(figsize=(max(5.5, 0.35 * len(values) * len(per) + 2), 3.2))
    for k, (p, v) in enumerate(per.items()):  # side by side: equal distributions stay visible
        share = np.bincount(v, minlength=hi + 1) / v.size
        ax.bar(values - 0.4 + width * (k + 0.5), share, width * 0.95, color=colors[p],
               label=f"{p} (n={v.size} ticks)")
    ax.set_xticks(values if len(values) <= 25 else values[::max(1, len(values) // 25)])
    top = max(float(np.bincount(v).max()) / v.size for v in per.values())
    ax.set_ylim(0, top * 1.35)  # headroom for the legend
    ax.set_xlabel("prefix staleness (control steps)")
    ax.set_ylabel("share of ticks")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=min(3, len(per)), loc="upper center")
    ax.set_title("Staleness of the prefix in use", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_gif(rec: EpisodeRecord, path: pathlib.Path) -> bool:
    """Camera frames of one episode as an animated GIF at the frames' real pace (capped)."""
    if rec.frames is None or len(rec.frames) == 0:
        return False
    import imageio.v2 as imageio

    frames = rec.frames
    stride = max(1, math.ceil(len(frames) / GIF_MAX_FRAMES))
    frames = frames[::stride]
    duration_s = rec.times[-1] - rec.times[0] if rec.n_ticks > 1 else 1.0
    per_frame = max(0.02, duration_s / max(len(frames), 1))
    imageio.mimsave(path, list(frames), duration=per_frame, loop=0)
    return True


# --------------------------------------------------------------------------------------------
# The documents


def _jerk_source(records: Sequence[EpisodeRecord]) -> str:
    """How the measured smoothness was read, in words (older records lack the raw samples)."""
    n = sum(r.has_joint_samples for r in records)
    stamped = ("/joint_states samples at their own stamps, resampled (local cubic) onto a "
               "uniform grid of one control period")
    ticks = ("the newest joint state before each tick with a constant dt (records without "
             "raw samples; timing jitter inflates this reading)")
    if n == len(records):
        return stamped
    if n == 0:
        return ticks
    return f"{stamped} ({n} of {len(records)} episodes), else {ticks}"


def _html_table(rows: Sequence[ReportRow]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "color:#222}table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;"
        "padding:4px 8px;text-align:right}th{background:#f3f3f3}td:first-child,td:nth-child(2)"
        "{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0}"
        ".notes{white-space:pre-wrap;background:#fafafa;padding:.6em;border-left:3px solid #ccc}")


def write_report(records: list[EpisodeRecord], out_dir: str | pathlib.Path, *, title: str,
                 notes: str = "") -> pathlib.Path:
    """Write report.md, report.html and their images into ``out_dir``; returns report.md's path.

    ``notes``: free text shown under the title (how the checkpoints were trained, the machine).
    """
    if not records:
        raise ValueError("write_report: no records given")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = report_rows(records)
    colors = _colors(_policies(records))
    figures: list[tuple[str, str, str]] = []  # (file, heading, caption)

    overlay = plot_trajectories(records, out / "trajectories.png", colors)
    if overlay:
        figures.append(("trajectories.png", "Joint trajectories",
                        f"Same task and seed ({overlay}) for every policy that ran it."))
    if plot_jerk(records, out / "jerk.png", colors):
        figures.append(("jerk.png", "Smoothness", "RMS jerk of the measured joint trajectory "
                        "(measured as in the table), one point per episode."))
    plot_success(rows, out / "success.png", colors)
    figures.append(("success.png", "Success", "Success rate per task with 95% Wilson "
                    "intervals; labels give successes / episodes."))
    if plot_staleness(records, out / "staleness.png", colors):
        figures.append(("staleness.png", "Prefix staleness", "Steps between the capture of "
                        "the frame behind the prefix in use and the control step."))
    gifs = []  # one episode per policy and task: the first success, else the first episode
    for p in _policies(records):
        for task in dict.fromkeys(r.task for r in records):
            shown = [r for r in records if r.policy == p and r.task == task
                     and r.frames is not None and len(r.frames)]
            if not shown:
                continue
            rec = next((r for r in shown if r.success), shown[0])
            name = f"episode_{p}_{rec.task}_{rec.seed}.gif"
            if write_gif(rec, out / name):
                gifs.append((name, f"{p}: {rec.task}, seed {rec.seed} "
                             f"({'success' if rec.success else 'failure'})"))

    seeds = sorted({r.seed for r in records})
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    summary = (f"{len(records)} episodes, policies {', '.join(_policies(records))}, tasks "
               f"{', '.join(dict.fromkeys(r.task for r in records))}, seeds "
               f"{seeds[0]}..{seeds[-1]} ({len(seeds)}); generated {stamp}.")

    md = [f"# {title}", "", summary, ""]
    if notes:
        md += [notes.strip(), ""]
    md += ["## Results", "", rows_markdown(rows), "",
           "Smoothness and peaks are of the measured joint positions, averaged over episodes: "
           f"{_jerk_source(records)}; the commands' jerk is of each tick's first commanded point "
           "at the time it targets, on the same grid. Time to success over successful episodes "
           "only; staleness over ticks with a prefix; latency over ticks that ran the model.",
           ""]
    for file, heading, caption in figures:
        md += [f"## {heading}", "", f"![{heading}]({file})", "", caption, ""]
    if gifs:
        md += ["## Episodes", ""] + [f"![{cap}]({name})\n\n{cap}\n" for name, cap in gifs]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{esc(title)}</h1><p>{esc(summary)}</p>"]
    if notes:
        parts.append(f"<div class='notes'>{esc(notes.strip())}</div>")
    parts.append(f"<h2>Results</h2>{_html_table(rows)}")
    for file, heading, caption in figures:
        parts.append(f"<h2>{esc(heading)}</h2><img src='{esc(file)}' alt='{esc(heading)}'>"
                     f"<p>{esc(caption)}</p>")
    if gifs:
        parts.append("<h2>Episodes</h2>")
        parts += [f"<figure><img src='{esc(n)}' alt='{esc(c)}'><figcaption>{esc(c)}"
                  "</figcaption></figure>" for n, c in gifs]
    parts.append("</body></html>")
    (out / "report.html").write_text("".join(parts), encoding="utf-8")
    return md_path
