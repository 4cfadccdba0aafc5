"""Atomic writes: a failure half-way leaves the previous output intact and no temporary files behind."""

import json

import pandas as pd
import pytest

from pipeline.io import atomic_dir, atomic_path, write_json, write_parquet


def test_atomic_path_keeps_previous_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_swaps_only_when_complete(tmp_path):
    target = tmp_path / "events"
    target.mkdir()
    (target / "a.parquet").write_text("previous")
    with pytest.raises(ValueError):
        with atomic_dir(target) as tmp:
            (tmp / "b.parquet").write_text("partial")
            raise ValueError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["events"]

    with atomic_dir(target) as tmp:
        (tmp / "c.parquet").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["c.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["events"]


def test_write_json_is_sorted_and_deterministic(tmp_path):
    path = tmp_path / "m.json"
    write_json({"b": 1, "a": [1.5, 2]}, path)
    first = path.read_bytes()
    write_json({"a": [1.5, 2], "b": 1}, path)
    assert path.read_bytes() == first
    assert list(json.loads(first)) == ["a", "b"]


def test_write_parquet_round_trip(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    write_parquet(frame, tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "f.parquet"), frame)


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    target = tmp_path / "events"
    (tmp_path / ".events.abc123.tmp").mkdir()  # what a SIGKILL mid-write leaves
    (tmp_path / ".other.abc.tmp").mkdir()  # another output's temporary: not ours to remove
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.abc.tmp", "events"]


def test_outputs_are_readable_by_others(tmp_path):
    write_json({"a": 1}, tmp_path / "m.json")
    assert (tmp_path / "m.json").stat().st_mode & 0o044 == 0o044
