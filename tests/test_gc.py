"""``iterconv gc``: unreferenced results are listed, and removed only on request."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from params_helpers import PARAMS, with_preset

from iterconv.cli import main
from iterconv.pipeline.gc import human_size, unreferenced
from iterconv.pipeline.units import Units, preset_units

STALE_HASH = "deadbeef"


def _write(path: Path, size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def _restamp(address: str) -> str:
    """The same readable name under another hash."""
    return f"{address.rsplit('-', 1)[0]}-{STALE_HASH}"


@pytest.fixture(scope="module")
def units() -> dict[str, Units]:
    return {name: preset_units(with_preset(name)) for name in ("micro", "demo")}


@pytest.fixture
def tree(tmp_path: Path, units: dict[str, Units]) -> tuple[Path, Path, set[Path], set[Path]]:
    """A results and a figures tree: (results, figures, stale entries, kept entries)."""
    results, figures = tmp_path / "results", tmp_path / "figures"
    kept: set[Path] = set()
    for u in units.values():
        dataset, run = next(iter(u.datasets)), next(iter(u.runs))
        family, jobs = next(iter(u.jobs.items()))
        kept |= {
            _write(results / "data" / dataset / "train.npz").parent,
            _write(results / "runs" / run / "metrics.json").parent,
            _write(results / "indices" / u.analysis / f"{run}.json"),
            _write(results / "indices" / u.analysis / f"{run}.log"),
            _write(results / "jobs" / family / next(iter(jobs)) / "result.json").parent,
            _write(results / u.preset / "tables" / "inputs-0123abcd.json").parent.parent,
            _write(figures / u.preset / "accuracy.png").parent,
        }
    demo = units["demo"]
    run, dataset = next(iter(demo.runs)), next(iter(demo.datasets))
    family, jobs = next(iter(demo.jobs.items()))
    stale = {
        _write(results / "data" / _restamp(dataset) / "train.npz", 2_000_000).parent,
        _write(results / "runs" / _restamp(run) / "metrics.json").parent,
        _write(results / "indices" / demo.analysis / f"{_restamp(run)}.json"),
        _write(results / "indices" / f"x8-{STALE_HASH}" / f"{run}.json").parent,
        _write(results / "jobs" / family / _restamp(next(iter(jobs))) / "result.json").parent,
        _write(results / "jobs" / "retired" / f"job-{STALE_HASH}" / "result.json").parent,
        _write(results / "oldpreset" / "tables" / "inputs-0123abcd.json").parent.parent,
        _write(figures / "oldpreset" / "accuracy.png").parent,
    }
    _write(figures / "oldpreset" / "accuracy.caption.txt")
    # Not ours: never listed, whatever their names.
    kept |= {
        _write(results / "runs" / "notes.txt"),
        _write(results / "runs" / "mine" / "notes.txt").parent,
        _write(results / "runs" / f"notes-{STALE_HASH}"),  # a file, not a unit directory
        _write(results / "indices" / demo.analysis / f".{_restamp(run)}.json.tmp"),
        _write(results / "toy" / "trajectories.csv").parent,
        _write(results / "logs" / "run_toy.log").parent,
        _write(results / "scratch" / "tables" / "summary.csv").parent.parent,
        _write(figures / "sketches" / "notes.md").parent,
    }
    return results, figures, stale, kept


def test_lists_exactly_the_stale_entries(tree, units) -> None:
    results, figures, stale, kept = tree
    assert set(unreferenced(PARAMS, results, figures)) == stale
    assert all(path.exists() for path in stale | kept)  # listing removes nothing


def test_missing_stores_are_empty(tmp_path: Path) -> None:
    assert unreferenced(PARAMS, tmp_path / "results", tmp_path / "figures") == []


def test_dry_run_lists_sizes_and_removes_nothing(tree, tmp_path, capsys) -> None:
    results, figures, stale, kept = tree
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    argv = ["gc", str(params), "--results", str(results), "--figures", str(figures)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{len(stale)} unreferenced entries, 2.0 MB" in out
    assert "run with --remove" in out
    assert f"  2.0 MB  {results / 'data'}" in out  # the large stale dataset, sized
    assert all(str(path) in out for path in stale)
    assert all(path.exists() for path in stale | kept)


def test_remove_deletes_exactly_the_stale_entries(tree, tmp_path, capsys) -> None:
    results, figures, stale, kept = tree
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    argv = ["gc", str(params), "--results", str(results), "--figures", str(figures)]
    assert main([*argv, "--remove"]) == 0
    assert f"removed {len(stale)} entries, 2.0 MB" in capsys.readouterr().out
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
    assert main(argv) == 0
    assert "nothing to collect" in capsys.readouterr().out


def test_invalid_preset_is_refused_and_nothing_removed(tree, tmp_path, capsys) -> None:
    results, figures, stale, kept = tree
    broken = with_preset("demo")
    broken["presets"]["micro"]["sweeps"][0]["datasets"] = ["no_such_dataset"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(broken))
    argv = ["gc", str(params), "--results", str(results), "--figures", str(figures), "--remove"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("iterconv gc: error: invalid") and err.count("\n") == 1
    assert all(path.exists() for path in stale | kept)


def test_missing_params_is_a_user_error(tmp_path, capsys) -> None:
    assert main(["gc", str(tmp_path / "absent.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("size", "text"), [(0, "0 B"), (999, "999 B"), (1_200, "1.2 kB"), (2_500_000, "2.5 MB")]
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text
