"""``iterconv status``: how far a preset's grid has got, read from what is on disk.

A training run at ``results/runs/<address>/`` is in exactly one state:

done      ``metrics.json`` is a non-empty regular file the user may read (it is written last
          and atomically, so present means complete; it is not parsed).
running   no ``metrics.json``, and either Snakemake marks the run's outputs incomplete
          (``.snakemake/incomplete/`` beside the results directory) while holding a lock
          (``.snakemake/locks/``): it started the job and has not finished it; or ``train.log``
          or ``last.pt`` was written within the staleness window, ``--stale`` seconds (default
          1800) or three mean epoch times if longer, and the log does not end in an error.
failed    no ``metrics.json``, not marked by Snakemake, and the log ends in an error: its last
          line is ``iterconv <command>: error: ...``, or a traceback was printed after the last
          progress line (start, resume or epoch line). An unreadable ``metrics.json`` is failed.
stopped   ``train.log`` or ``last.pt`` present, neither of the above, and nothing written within
          the window: killed (out of memory, a time limit, SIGTERM) or abandoned; rerunning the
          workflow resumes it from ``last.pt``.
pending   nothing there.

Cost: one directory listing per existing run directory and a few ``stat`` calls; logs (the last
64 KiB) and ``history.csv`` are read only for runs that are neither done nor pending. Epoch,
validation error and mean epoch time come from the log's epoch lines, as
:func:`iterconv.train.loop.train_run` prints them, or from ``history.csv`` when it holds more
epochs. The ETA is the remaining epochs times the mean epoch time, less the time since the log
was last written.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import math
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from iterconv.errors import UserError
from iterconv.train.progress import parse_epoch_line

if TYPE_CHECKING:  # imported lazily: every command's start-up loads this module
    from iterconv.pipeline.units import Units

STATES = ("done", "running", "failed", "stopped", "pending")
DEFAULT_STALE_SECONDS = 1800.0
STALE_EPOCHS = 3  # a run is active while its last write is younger than this many epoch times
TAIL_BYTES = 64 * 1024

# The lines iterconv.train.loop.train_run logs besides its epoch lines (iterconv.train.progress).
START_LINE = re.compile(r"^(training epochs \d+\.\.\d+ on |resuming after epoch \d+ of \d+)")
ERROR_LINE = re.compile(r"^iterconv [\w-]+: error: ")
TRACEBACK = "Traceback (most recent call last):"


@dataclass
class Progress:
    """Where a partial run stands."""

    epoch: int | None = None  # epochs completed
    epochs: int = 0
    val_error: float | None = None  # of the last completed epoch
    mean_seconds: float | None = None  # per epoch, over the logged epochs
    last_write: float | None = None  # newest modification time of train.log, last.pt
    eta: float | None = None  # seconds


@dataclass
class RunStatus:
    address: str
    sweep: str
    state: str
    progress: Progress | None = None
    last_line: str = ""  # of the log, for failed and stopped runs


@dataclass
class GridStatus:
    preset: str
    results: Path
    runs: list[RunStatus]
    datasets: tuple[int, int]  # (prepared, total)
    analysis: str
    analyses: tuple[int, int]  # (done, total)
    families: dict[str, tuple[int, int]] = field(default_factory=dict)  # family -> (done, total)

    def count(self, state: str, sweep: str | None = None) -> int:
        return sum(r.state == state and sweep in (None, r.sweep) for r in self.runs)

    @property
    def sweeps(self) -> list[str]:
        return list(dict.fromkeys(r.sweep for r in self.runs))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show how far a preset's grid has got (runs, jobs, logs)")
    p.add_argument("params", type=Path, nargs="?", default=Path("params.yaml"))
    p.add_argument("--preset", help="override the preset key")
    p.add_argument(
        "--results", type=Path, default=Path("results"), help="results directory (default: results)"
    )
    p.add_argument(
        "--watch", type=float, metavar="SECONDS", help="redraw every SECONDS until interrupted"
    )
    p.add_argument(
        "--stale",
        type=float,
        default=DEFAULT_STALE_SECONDS,
        metavar="SECONDS",
        help="a partial run not written for this long (and for 3 epoch times) is stopped "
        f"unless Snakemake runs it (default: {DEFAULT_STALE_SECONDS:g})",
    )
    p.set_defaults(handler=status)


# --- reading the disk --------------------------------------------------------------------------


def _listing(directory: Path) -> dict[str, os.DirEntry]:
    """The entries of ``directory`` by name; empty when it does not exist."""
    try:
        with os.scandir(directory) as entries:
            return {e.name: e for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _is_file(entries: dict[str, os.DirEntry], name: str) -> bool:
    entry = entries.get(name)
    return entry is not None and entry.is_file()


def snakemake_started(workdir: Path) -> set[str]:
    """Absolute paths of the outputs Snakemake marks incomplete (jobs it started and has not
    finished), while it holds a lock on ``workdir``; empty otherwise. A marker's name is the
    URL-safe base64 of the output's path, split into ``@``-prefixed directories when long."""
    meta = workdir / ".snakemake"
    if not any(name.endswith(".lock") for name in _listing(meta / "locks")):
        return set()
    root = meta / "incomplete"
    started: set[str] = set()
    for folder, _dirs, files in os.walk(root):
        prefix = "".join(p.removeprefix("@") for p in Path(folder).relative_to(root).parts)
        for name in files:
            try:
                key = base64.urlsafe_b64decode(prefix + name).decode()
            except (binascii.Error, ValueError):
                continue  # not a marker (e.g. a migration flag)
            started.add(os.path.normpath(os.path.join(workdir.absolute(), key)))
    return started


def read_tail(path: Path, limit: int = TAIL_BYTES) -> list[str]:
    """The non-empty lines of the last ``limit`` bytes of ``path`` (none if unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(size - limit, 0))
            data = fh.read()
    except OSError:
        return []
    lines = data.decode(errors="replace").splitlines()
    if size > limit:
        lines = lines[1:]  # the first may be cut
    return [line.rstrip() for line in lines if line.strip()]


@dataclass
class LogSummary:
    epoch: int | None = None
    val_error: float | None = None
    seconds: list[float] = field(default_factory=list)
    failed: bool = False
    last_line: str = ""


def parse_log(lines: list[str]) -> LogSummary:
    """Epoch, validation error and epoch times from the epoch lines of a ``train.log``, and
    whether it ends in an error (an error line, or a traceback after the last progress line;
    a log is appended to by every attempt)."""
    summary = LogSummary(last_line=lines[-1] if lines else "")
    last_progress = last_traceback = -1
    for i, line in enumerate(lines):
        if epoch := parse_epoch_line(line):
            summary.epoch = epoch.epoch
            summary.val_error = epoch.val_error
            summary.seconds.append(epoch.seconds)
            last_progress = i
        elif START_LINE.match(line):
            last_progress = i
        elif line.startswith(TRACEBACK):
            last_traceback = i
    summary.failed = bool(ERROR_LINE.match(summary.last_line)) or last_traceback > last_progress
    return summary


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def read_history(path: Path) -> tuple[int, float | None, list[float]]:
    """(epochs, last validation error, epoch times) from a ``history.csv``."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError):
        return 0, None, []
    seconds = [s for s in (_float(r.get("seconds") or "") for r in rows) if s is not None]
    last = _float(rows[-1].get("val_error") or "") if rows else None
    return len(rows), last, seconds


def run_status(
    address: str,
    sweep: str,
    epochs: int,
    run_dir: Path,
    entries: dict[str, os.DirEntry],
    started: bool,
    now: float,
    stale: float,
) -> RunStatus:
    """The state of one run (see the module's docstring) from its directory listing."""
    metrics = entries.get("metrics.json")
    if metrics is not None:
        try:
            info = metrics.stat()
            readable = metrics.is_file() and info.st_size > 0 and os.access(metrics.path, os.R_OK)
        except OSError:
            readable = False
        if readable:
            return RunStatus(address, sweep, "done")
        return RunStatus(address, sweep, "failed", last_line="metrics.json is empty or unreadable")
    written = [entries[n] for n in ("train.log", "last.pt") if _is_file(entries, n)]
    if not written:
        state = "running" if started else "pending"
        return RunStatus(address, sweep, state, Progress(epochs=epochs) if started else None)

    log = parse_log(read_tail(run_dir / "train.log")) if "train.log" in entries else LogSummary()
    epoch, val_error, seconds = log.epoch, log.val_error, log.seconds
    if _is_file(entries, "history.csv"):
        rows, last, times = read_history(run_dir / "history.csv")
        if rows > (epoch or 0):
            epoch, val_error, seconds = rows, last, times
    mean = sum(seconds) / len(seconds) if seconds else None
    last_write = max(_mtime(e) for e in written)
    progress = Progress(epoch, epochs, val_error, mean, last_write)
    if epoch is not None and mean is not None:
        progress.eta = max(0.0, (epochs - epoch) * mean - (now - last_write))

    window = max(stale, STALE_EPOCHS * (mean or 0.0))
    if started:
        state = "running"
    elif log.failed:
        state = "failed"
    elif now - last_write < window:
        state = "running"
    else:
        state = "stopped"
    return RunStatus(address, sweep, state, progress, log.last_line)


def _mtime(entry: os.DirEntry) -> float:
    try:
        return entry.stat().st_mtime
    except OSError:
        return -math.inf


def grid_status(
    units: Units, results: Path, now: float | None = None, stale: float = DEFAULT_STALE_SECONDS
) -> GridStatus:
    """The state of every unit of a preset under ``results`` (``now``: seconds since the
    epoch, default the current time)."""
    now = time.time() if now is None else now
    started = snakemake_started(results.absolute().parent)
    run_dirs = _listing(results / "runs")
    runs = []
    for address, run in units.runs.items():
        run_dir = results / "runs" / address
        entry = run_dirs.get(address)
        entries = _listing(run_dir) if entry is not None and entry.is_dir() else {}
        key = os.path.normpath(os.path.abspath(run_dir / "metrics.json"))
        runs.append(
            run_status(
                address, run.sweep, run.config.epochs, run_dir, entries, key in started, now, stale
            )
        )

    data_dirs = _listing(results / "data")
    prepared = sum(
        address in data_dirs and (results / "data" / address / "manifest.json").is_file()
        for address in units.datasets
    )
    indices = _listing(results / "indices" / units.analysis)
    analysed = sum(_is_file(indices, f"{address}.json") for address in units.runs)
    families = {}
    for family, jobs in sorted(units.jobs.items()):
        job_dirs = _listing(results / "jobs" / family)
        done = sum(
            address in job_dirs and (results / "jobs" / family / address / "result.json").is_file()
            for address in jobs
        )
        families[family] = (done, len(jobs))
    return GridStatus(
        units.preset,
        results,
        runs,
        (prepared, len(units.datasets)),
        units.analysis,
        (analysed, len(units.runs)),
        families,
    )


# --- rendering ---------------------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """``h:mm:ss`` (``-`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _epoch(p: Progress | None) -> str:
    if p is None or p.epoch is None:
        return f"-/{p.epochs}" if p is not None else "-"
    return f"{p.epoch}/{p.epochs}"


def _error(p: Progress | None) -> str:
    return "-" if p is None or p.val_error is None else f"{100 * p.val_error:.1f}%"


def _table(header: Iterable[str], rows: list[list[str]], indent: str = "") -> list[str]:
    """Left-aligned first column, right-aligned others."""
    table = [list(header), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        indent
        + "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]


def total_line(st: GridStatus) -> str:
    counts = ", ".join(f"{st.count(s)} {s}" for s in STATES[1:])
    jobs = [sum(x) for x in zip(*st.families.values(), strict=True)] or [0, 0]
    return (
        f"total: {st.count('done')}/{len(st.runs)} runs done, {counts}; "
        f"{st.analyses[0]}/{st.analyses[1]} analyses; {jobs[0]}/{jobs[1]} family jobs"
    )


def render(st: GridStatus, now: float) -> str:
    runs_dir = st.results / "runs"
    lines = [f"preset {st.preset}: {len(st.runs)} runs in {len(st.sweeps)} sweeps ({st.results})"]
    rows = [
        [sweep, str(sum(r.sweep == sweep for r in st.runs))]
        + [str(st.count(s, sweep)) for s in STATES]
        for sweep in st.sweeps
    ]
    rows.append(["total", str(len(st.runs)), *(str(st.count(s)) for s in STATES)])
    lines += ["", *_table(["sweep", "runs", *STATES], rows)]

    for state, column, note in (
        ("running", "ETA", f"logs: {runs_dir}/<address>/train.log"),
        ("stopped", "last write", "rerunning the workflow resumes them from last.pt"),
    ):
        rows = []
        for r in (r for r in st.runs if r.state == state):
            p = r.progress
            if state == "running":
                when = p.eta if p is not None else None
            else:
                when = now - p.last_write if p is not None and p.last_write is not None else None
            suffix = " ago" if state == "stopped" and when is not None else ""
            rows.append([r.address, _epoch(p), _error(p), format_duration(when) + suffix])
        if rows:
            lines += ["", f"{state} ({note})"]
            lines += _table(["", "epoch", "val error", column], rows, "  ")

    failed = [r for r in st.runs if r.state == "failed"]
    if failed:
        lines += ["", f"failed (logs: {runs_dir}/<address>/train.log)"]
        for r in failed:
            lines += [f"  {r.address}", f"    {r.last_line or '(empty log)'}"]

    lines += [
        "",
        f"datasets     {st.datasets[0]}/{st.datasets[1]} prepared",
        f"analyses     {st.analyses[0]}/{st.analyses[1]} ({st.results / 'indices' / st.analysis})",
    ]
    if st.families:
        jobs = ", ".join(f"{f} {d}/{t}" for f, (d, t) in st.families.items())
        lines.append(f"family jobs  {jobs}")
    lines += ["", total_line(st)]
    return "\n".join(lines)


# --- command -----------------------------------------------------------------------------------


def status(args: argparse.Namespace) -> int:
    from iterconv.pipeline.cli import load_params
    from iterconv.pipeline.units import preset_units

    if args.watch is not None and not (math.isfinite(args.watch) and args.watch > 0):
        raise UserError(f"--watch takes a positive number of seconds, got {args.watch:g}")
    if not (math.isfinite(args.stale) and args.stale >= 0):
        raise UserError(f"--stale takes a number of seconds >= 0, got {args.stale:g}")
    units = preset_units(load_params(args.params, args.preset))
    if args.watch is None:
        now = time.time()
        print(render(grid_status(units, args.results, now, args.stale), now))
        return 0
    clear = "\033[H\033[2J" if sys.stdout.isatty() else ""
    try:
        while True:
            now = time.time()
            text = render(grid_status(units, args.results, now, args.stale), now)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            print(f"{clear}{stamp}  (every {args.watch:g}s, Ctrl-C to stop)\n{text}", flush=True)
            time.sleep(args.watch)
    except KeyboardInterrupt:
        print()
        return 0
