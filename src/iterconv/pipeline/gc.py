"""``iterconv gc``: list, and on request remove, results that no preset references.

Units live at content addresses (:mod:`iterconv.pipeline.address`), so editing a setting leaves
the old units behind under their old addresses. A unit is kept while any preset of params.yaml
references it; only entries named the way this project names them are ever considered, so a
user's own files and partial files being written are left alone.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iterconv.cli import UserError
from iterconv.pipeline.address import ANALYSIS_PATTERN, STORES, UNIT_PATTERN

ADDRESS = re.compile(rf"^{UNIT_PATTERN}$")
ANALYSIS = re.compile(rf"^{ANALYSIS_PATTERN}$")
INDEX_SUFFIXES = (".json", ".log")
FIGURE_SUFFIXES = (".png", ".pdf", ".caption.txt")


@dataclass
class Referenced:
    """The addresses some preset uses."""

    presets: set[str] = field(default_factory=set)
    datasets: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)
    indices: set[tuple[str, str]] = field(default_factory=set)  # (analysis, run)
    jobs: set[tuple[str, str]] = field(default_factory=set)  # (family, job)

    @property
    def analyses(self) -> set[str]:
        return {analysis for analysis, _ in self.indices}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gc", help="list (or remove) results that no preset references")
    p.add_argument(
        "params",
        type=Path,
        nargs="?",
        default=Path("params.yaml"),
        help="params file whose presets are kept (default: params.yaml)",
    )
    p.add_argument(
        "--results", type=Path, default=Path("results"), help="results directory (default: results)"
    )
    p.add_argument(
        "--figures", type=Path, default=Path("figures"), help="figures directory (default: figures)"
    )
    p.add_argument("--remove", action="store_true", help="delete the listed entries")
    p.set_defaults(handler=gc)


def referenced(params: dict[str, Any]) -> Referenced:
    """Union of the units of every preset (raises ValueError for an invalid params or preset)."""
    from iterconv.pipeline.units import preset_units
    from iterconv.pipeline.validate import validate_params

    presets = params.get("presets") if isinstance(params, dict) else None
    if not isinstance(presets, dict) or not presets:
        raise ValueError("presets: params defines no presets")
    refs = Referenced(presets=set(presets))
    for name in presets:
        selected = copy.deepcopy(params)
        selected["preset"] = name
        validate_params(selected)
        units = preset_units(selected)
        refs.datasets |= set(units.datasets)
        refs.runs |= set(units.runs)
        refs.indices |= {(units.analysis, run) for run in units.runs}
        refs.jobs |= {(family, job) for family, jobs in units.jobs.items() for job in jobs}
    return refs


def unreferenced(params: dict[str, Any], results: Path, figures: Path) -> list[Path]:
    """Entries under ``results`` and ``figures`` that this project created and no preset of
    ``params`` references, sorted. Raises ValueError for an invalid params."""
    refs = referenced(params)
    found: list[Path] = []
    found += [p for p in _address_dirs(results / "data") if p.name not in refs.datasets]
    found += [p for p in _address_dirs(results / "runs") if p.name not in refs.runs]
    for family in _subdirs(results / "jobs"):
        found += [p for p in _address_dirs(family) if (family.name, p.name) not in refs.jobs]
    for analysis in _subdirs(results / "indices"):
        if not ANALYSIS.match(analysis.name):
            continue
        files = _index_files(analysis)
        if analysis.name not in refs.analyses and len(files) == len(list(analysis.iterdir())):
            found.append(analysis)  # wholly ours and wholly stale
        else:
            found += [f for f in files if (analysis.name, _stem(f.name)) not in refs.indices]
    kept = refs.presets | STORES
    found += [d for d in _subdirs(results) if d.name not in kept and _is_aggregate(d)]
    found += [d for d in _subdirs(figures) if d.name not in kept and _is_figures(d)]
    return sorted(found)


def entry_size(path: Path) -> int:
    """Bytes in a file or, recursively, a directory (links are not followed)."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def human_size(size: float) -> str:
    """Decimal units: ``512 B``, ``1.2 MB``."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def gc(args: argparse.Namespace) -> int:
    from iterconv.pipeline import ParamsError
    from iterconv.pipeline.params import read_params

    try:
        params = read_params(args.params)
    except ParamsError as err:
        raise UserError(str(err)) from err
    try:
        entries = unreferenced(params, args.results, args.figures)
    except ValueError as err:
        raise UserError(f"invalid {args.params}: {err}") from err
    if not entries:
        print("nothing to collect")
        return 0
    sizes = [entry_size(p) for p in entries]
    for path, size in zip(entries, sizes, strict=True):
        print(f"{human_size(size):>9}  {path}")
    total = human_size(sum(sizes))
    if args.remove:
        for path in entries:
            remove(path)
        print(f"removed {len(entries)} entries, {total}")
    else:
        print(f"{len(entries)} unreferenced entries, {total}")
        print("run with --remove to delete them")
    return 0


def _subdirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink())


def _address_dirs(root: Path) -> list[Path]:
    return [p for p in _subdirs(root) if ADDRESS.match(p.name)]


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _index_files(analysis: Path) -> list[Path]:
    """An analysis directory's ``<run address>.json`` and ``.log`` files."""
    return sorted(
        p
        for p in analysis.iterdir()
        if p.suffix in INDEX_SUFFIXES
        and ADDRESS.match(_stem(p.name))
        and p.is_file()
        and not p.is_symlink()
    )


def _is_aggregate(path: Path) -> bool:
    """A preset's aggregate directory: its tables carry an inputs stamp."""
    tables = path / "tables"
    return tables.is_dir() and any(p.is_file() for p in tables.glob("inputs-*.json"))


def _is_figures(path: Path) -> bool:
    """A preset's figure directory: figures and captions only."""
    files = list(path.iterdir())
    return bool(files) and all(
        p.is_file() and not p.is_symlink() and p.name.endswith(FIGURE_SUFFIXES) for p in files
    )
