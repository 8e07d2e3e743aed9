"""The Markdown section of a benchmark: our runs and the peers' in one table, the published figures apart.

The section sits between START_MARKER and END_MARKER in a Markdown file; `update_markdown` replaces it
(or appends it) and leaves the rest of the file as it was.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from slam.bench import published
from slam.bench.results import Cell
from slam.errors import SlamInputError

START_MARKER = "<!-- bench-suite:start -->"
END_MARKER = "<!-- bench-suite:end -->"
TABLE_HEADER = (
    "| sequence | mode | method | runs ok | ATE m (align) | ATE online m | RPE m/frame | tracked/frames | "
    "tracking ms p50 / p95 | fps | run wall s | peak RSS MB | start-up s | local BA ms | status |"
)


def format_section(cells: list[Cell], header: dict[str, Any]) -> str:
    """The whole section, markers included."""
    m = header["machine"]
    lines = [
        START_MARKER,
        "### Results: our system and peers on the same frames",
        "",
        f"- Date: {header['date']}",
        f"- Machine: {m['platform']}; {m['cpu_count']} CPUs ({m.get('cpu_model') or 'model unknown'}); "
        f"{m.get('memory_gib')} GiB memory; Python {m['python']}",
        f"- Code: commit {header.get('git') or 'unknown'}",
        f"- Command: `{header['command']}` ({header['executor']})",
        "- Each run is its own process; values are median [min-max] over the successful runs. ATE is the RMSE "
        "after SE(3) alignment (rgbd, stereo) or Sim(3) (mono) through `slam.evaluation`, for every method.",
        *([f"- Note: {header['note']}"] if header.get("note") else []),
        "",
        TABLE_HEADER,
        "|" + "---|" * (TABLE_HEADER.count("|") - 1),
        *(table_row(c) for c in cells),
        "",
        *note_lines(cells),
        *problem_lines(cells),
        *published_lines(),
        END_MARKER,
    ]
    return "\n".join(lines)


def table_row(cell: Cell) -> str:
    s = cell.summary
    total = len(cell.runs)
    align = next((r.metrics.get("ate_align") for r in cell.ok_runs if r.metrics.get("ate_align")), None)
    ate = stat(s, "ate_rmse_m", 4) + (f" ({align})" if align and "ate_rmse_m" in s else "")
    cells = [
        cell.sequence,
        cell.mode,
        cell.method if cell.peer is None else f"{cell.method} (peer)",
        f"{len(cell.ok_runs)}/{total}" if total else "-",
        ate,
        stat(s, "ate_online_rmse_m", 4),
        stat(s, "rpe_trans_m", 4),
        tracked(s),
        f"{stat(s, 'tracking_ms_p50', 1)} / {stat(s, 'tracking_ms_p95', 1)}",
        stat(s, "fps", 1),
        stat(s, "run_wall_s", 1),
        stat(s, "peak_rss_mb", 0),
        stat(s, "startup_s", 2),
        stat(s, "local_ba_ms_mean", 1),
        status_text(cell),
    ]
    return "| " + " | ".join(_cell_text(c) for c in cells) + " |"


def status_text(cell: Cell) -> str:
    status = cell.status
    if status == "ok":
        return "ok"
    if status == "skipped":
        return f"skipped: {cell.reason}"
    if status == "failed":
        return "FAILED"
    return f"FAILED {len(cell.runs) - len(cell.ok_runs)} of {len(cell.runs)}"


def note_lines(cells: list[Cell]) -> list[str]:
    """What a method's runs say about how they ran (run.json "note", e.g. the ORB-SLAM3 peer's vocabulary)."""
    notes: dict[str, list[str]] = {}
    for c in cells:
        for r in c.ok_runs:
            note = r.metrics.get("note")
            if isinstance(note, str) and note and note not in notes.setdefault(c.method, []):
                notes[c.method].append(note)
    lines = [f"- {method}: {_oneline(note)}" for method, items in notes.items() for note in items]
    return ["Notes:", "", *lines, ""] if lines else []


def problem_lines(cells: list[Cell]) -> list[str]:
    """Each failed run with its error (the run's folder has job.log)."""
    lines = [
        f"- {c.sequence} / {c.method} run {r.run}: {_oneline(r.error) or 'failed'}"
        for c in cells
        for r in c.runs
        if r.status == "failed"
    ]
    return ["Failed runs:", "", *lines, ""] if lines else []


def published_lines() -> list[str]:
    lines = [
        "#### Published figures (not measured here)",
        "",
        "Full sequences, the authors' machines and protocols: context only, not comparable with the short "
        "chunks above.",
        "",
        "| system | sequence | mode | ATE RMSE m | source |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.system} | {f.sequence} | {f.mode} | {f.ate_rmse_m:.3f} | [{f.source}] |" for f in published.FIGURES
    ]
    lines += ["", *(f"- [{s.key}] {s.citation}" for s in published.SOURCES), f"- {published.NOT_FOUND}", ""]
    return lines


def stat(summary: dict[str, dict[str, float]], key: str, digits: int) -> str:
    s = summary.get(key)
    if not s:
        return "n/a"
    if s["min"] == s["max"]:
        return _num(s["median"], digits)
    return f"{_num(s['median'], digits)} [{_num(s['min'], digits)}-{_num(s['max'], digits)}]"


def tracked(summary: dict[str, dict[str, float]]) -> str:
    done, frames = summary.get("tracked_frames"), summary.get("frames")
    if not done or not frames:
        return "n/a"
    low, high = int(done["min"]), int(done["max"])
    count = str(low) if low == high else f"{low}-{high}"
    n = int(frames["median"]) if frames["min"] == frames["max"] else f"{int(frames['min'])}-{int(frames['max'])}"
    return f"{count}/{n}"


def _num(value: float | None, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _cell_text(text: str) -> str:
    return _oneline(text).replace("|", "\\|")


def replace_section(text: str, section: str) -> str:
    """`text` with the marked section replaced by `section`, or `section` appended when there is none."""
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start == -1 and end == -1:
        return section + "\n" if not text else text + ("\n" if text.endswith("\n") else "\n\n") + section + "\n"
    if start == -1 or end == -1 or end < start:
        raise ValueError(f"unbalanced markers: need {START_MARKER} before {END_MARKER}")
    return text[:start] + section + text[end + len(END_MARKER) :]


def update_markdown(path: Path, section: str) -> None:
    """Replace the section in `path` (atomically: a reader never sees half a file)."""
    text = path.read_text() if path.exists() else ""
    try:
        updated = replace_section(text, section)
    except ValueError as exc:
        raise SlamInputError(str(exc), path) from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(updated)
    tmp.replace(path)
