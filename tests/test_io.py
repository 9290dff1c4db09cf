"""Atomic directory replacement: swaps whole, keeps the old one on failure, refuses foreign
entries before touching anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from iterconv.io import ForeignEntryError, check_replaceable, replace_dir

OWNED = ("*.csv", "inputs-*.json")


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (directories as None), relative to it."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def old(tmp_path: Path) -> Path:
    target = tmp_path / "tables"
    target.mkdir()
    (target / "a.csv").write_text("x\n1\n")
    (target / "inputs-old.json").write_text("{}\n")
    return target


def test_success_swaps_the_whole_directory(old):
    with replace_dir(old, OWNED) as tmp:
        assert tmp.parent == old.parent and tmp != old and not any(tmp.iterdir())
        (tmp / "b.csv").write_text("y\n2\n")
    assert snapshot(old) == {"b.csv": b"y\n2\n"}
    assert sorted(p.name for p in old.parent.iterdir()) == ["tables"]  # nothing left aside


def test_a_new_directory_and_its_parents_are_created(tmp_path):
    target = tmp_path / "a" / "b" / "tables"
    with replace_dir(target, OWNED) as tmp:
        (tmp / "t.csv").write_text("z\n")
    assert snapshot(target) == {"t.csv": b"z\n"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["tables"]


def test_an_exception_keeps_the_old_directory(old):
    before = snapshot(old.parent)
    with pytest.raises(RuntimeError, match="boom"), replace_dir(old, OWNED) as tmp:
        (tmp / "a.csv").write_text("half")
        raise RuntimeError("boom")
    assert snapshot(old.parent) == before


def test_a_predicate_may_decide_ownership(old):
    with replace_dir(old, lambda p: p.suffix in {".csv", ".json"}) as tmp:
        (tmp / "c.csv").write_text("")
    assert snapshot(old) == {"c.csv": b""}


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda d: (d / "notes.txt").write_text("mine"), "notes.txt"),
        (lambda d: (d / "sub.csv").mkdir(), "sub.csv"),  # a directory is never owned
        (lambda d: (d / ".hidden").write_text(""), ".hidden"),
    ],
    ids=["file", "directory", "hidden"],
)
def test_a_foreign_entry_is_refused_before_anything_is_touched(old, make, name):
    make(old)
    before = snapshot(old.parent)
    pattern = rf"{re.escape(str(old))}.*'{re.escape(name)}'.*move"
    with pytest.raises(ForeignEntryError, match=pattern), replace_dir(old, OWNED):
        raise AssertionError("the body must not run")
    assert snapshot(old.parent) == before


def test_a_foreign_entry_arriving_before_the_swap_is_refused(old):
    before = snapshot(old)
    with pytest.raises(ForeignEntryError, match=r"late\.txt"), replace_dir(old, OWNED) as tmp:
        (tmp / "a.csv").write_text("new")
        (old / "late.txt").write_text("someone else's")
    assert snapshot(old) == {**before, "late.txt": b"someone else's"}
    assert sorted(p.name for p in old.parent.iterdir()) == ["tables"]


def test_a_target_that_is_a_file_or_a_link_is_refused(tmp_path):
    file = tmp_path / "docs"
    file.write_text("README")
    with pytest.raises(ForeignEntryError, match="not a directory"):
        check_replaceable(file, OWNED)
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ForeignEntryError, match="not a directory"):
        check_replaceable(link, OWNED)
    assert file.read_text() == "README" and link.is_symlink()


def test_an_absent_or_empty_target_is_replaceable(tmp_path):
    check_replaceable(tmp_path / "nope", OWNED)
    check_replaceable(tmp_path, OWNED)
