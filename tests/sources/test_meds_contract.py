"""The MEDS contract by the book: our ingest output and labels validate with the official `meds` schemas,
and a MEDS input's own subject splits survive ingest and cohort building."""

from __future__ import annotations

import json
from pathlib import Path

import meds
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from pipeline.cohort import build_cohort
from pipeline.ingest import IngestConfig, ingest
from pipeline.schema import MEDS_VERSION

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def meds_dataset(synth_small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("meds") / "events"
    ingest("mimic-iv", synth_small, out, IngestConfig(), progress=False)
    return out


def _validate_dataset(root: Path) -> None:
    shards = sorted((root / "data").glob("*.parquet"))
    assert shards
    for shard in shards:
        meds.DataSchema.validate(pq.read_table(shard))  # raises SchemaValidationError on any mismatch
    meds.CodeMetadataSchema.validate(pq.read_table(root / "metadata" / "codes.parquet"))
    meds.SubjectSplitSchema.validate(pq.read_table(root / "metadata" / "subject_splits.parquet"))
    meta = json.loads((root / "metadata" / "dataset.json").read_text())
    meds.DatasetMetadataSchema.validate(meta)
    assert meta["meds_version"] == MEDS_VERSION == meds.__version__


def test_ingest_output_and_labels_validate_with_meds(meds_dataset, tmp_path):
    _validate_dataset(meds_dataset)
    for cohort in ("in_hospital_mortality", "readmission_30d"):
        out = tmp_path / cohort
        build_cohort(REPO / "cohorts" / f"{cohort}.yaml", meds_dataset, out)
        meds_labels = pq.read_table(out / "meds_labels.parquet")
        meds.LabelSchema.validate(meds_labels)
        ours = pl.read_parquet(out / "labels.parquet")
        assert pl.from_arrow(meds_labels).equals(ours.select("subject_id", "prediction_time", "boolean_value"))


def test_wrong_types_are_caught_by_the_validator(meds_dataset):
    """The check above can fail: the types polars writes by default are not MEDS's."""
    codes = pl.read_parquet(meds_dataset / "metadata" / "codes.parquet")
    with pytest.raises(Exception, match="large_string"):
        meds.CodeMetadataSchema.validate(codes.to_arrow())


def test_meds_input_keeps_its_own_splits(meds_dataset, tmp_path):
    # a MEDS input whose split file disagrees with our keyed hash on purpose
    src = tmp_path / "their_meds"
    (src / "data").mkdir(parents=True)
    for shard in (meds_dataset / "data").glob("*.parquet"):
        (src / "data" / shard.name).write_bytes(shard.read_bytes())
    ours = pl.read_parquet(meds_dataset / "metadata" / "subject_splits.parquet")
    rng = np.random.default_rng(0)
    theirs = ours.with_columns(
        pl.Series("split", rng.choice(["train", "tuning", "held_out"], ours.height, p=[0.5, 0.25, 0.25]))
    )
    assert (theirs["split"] != ours["split"]).sum() > ours.height // 3
    (src / "metadata").mkdir()
    theirs.write_parquet(src / "metadata" / "subject_splits.parquet")

    out = tmp_path / "events"
    summary = ingest("meds", src, out, IngestConfig(), progress=False)
    assert summary["split_source"] == "input"
    _validate_dataset(out)
    kept = pl.read_parquet(out / "metadata" / "subject_splits.parquet")
    assert kept.sort("subject_id").equals(theirs.sort("subject_id"))

    cohort = build_cohort(REPO / "cohorts" / "readmission_30d.yaml", out, tmp_path / "cohort")
    assert cohort["split_source"] == "input"
    labels = pl.read_parquet(tmp_path / "cohort" / "labels.parquet")
    joined = labels.join(theirs, on="subject_id", how="left", suffix="_theirs")
    assert joined["split_theirs"].null_count() == 0
    assert (joined["split"] == joined["split_theirs"]).all()
    assert json.loads((tmp_path / "cohort" / "splits.json").read_text())["source"] == "input"


def test_meds_input_without_splits_uses_the_keyed_hash(meds_dataset, tmp_path):
    src = tmp_path / "their_meds"
    (src / "data").mkdir(parents=True)
    for shard in (meds_dataset / "data").glob("*.parquet"):
        (src / "data" / shard.name).write_bytes(shard.read_bytes())
    out = tmp_path / "events"
    assert ingest("meds", src, out, IngestConfig(), progress=False)["split_source"] == "keyed_hash"
    assert pl.read_parquet(out / "metadata" / "subject_splits.parquet").equals(
        pl.read_parquet(meds_dataset / "metadata" / "subject_splits.parquet")
    )
