"""Bad inputs (issue 3, point 5): schema problems raise one-line errors and leave no output; row problems
go to quality/rejects.parquet with a reason, are counted and warned about, and every other row is kept."""

from __future__ import annotations

import gzip
import logging

import numpy as np
import polars as pl
import pytest

from pipeline.events import read_events
from pipeline.exceptions import InputSchemaError, RowQualityError
from pipeline.ingest import IngestConfig, ingest


def read_raw(path):
    """A raw CSV(.gz) table with every column as string (as the file holds it)."""
    return pl.read_csv(path, infer_schema=False)


def write_raw(df, path):
    with gzip.open(path, "wb") as fh:
        df.write_csv(fh)


def _run(raw, tmp_path, **cfg):
    return ingest("mimic-iv", raw, tmp_path / "events", IngestConfig(**cfg), progress=False)


def _no_output(tmp_path):
    assert not (tmp_path / "events").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".events")], "temporary folder left behind"


@pytest.fixture(scope="module")
def baseline(synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "events"
    s = ingest("mimic-iv", synth_small, out, IngestConfig(), progress=False)
    return s, read_events(out).collect()


# ----------------------------------------------------------------------------- schema problems
def _at_row(row: int, value: str, column: str) -> pl.Expr:
    """``column`` with its value at ``row`` replaced by ``value`` (a raw CSV string)."""
    return pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value)).otherwise(column)


def test_missing_table(raw_copy, tmp_path):
    (raw_copy / "hosp" / "admissions.csv.gz").unlink()
    with pytest.raises(InputSchemaError, match=r"admissions\.csv\.gz: required table is missing") as e:
        _run(raw_copy, tmp_path)
    assert "\n" not in str(e.value)
    _no_output(tmp_path)


def test_missing_column(raw_copy, tmp_path):
    p = raw_copy / "hosp" / "admissions.csv.gz"
    write_raw(read_raw(p).drop("dischtime"), p)
    with pytest.raises(InputSchemaError, match=r"admissions\.csv\.gz: column 'dischtime' is missing"):
        _run(raw_copy, tmp_path)
    _no_output(tmp_path)


def test_wrong_type_throughout(raw_copy, tmp_path):
    p = raw_copy / "hosp" / "labevents.csv.gz"
    df = read_raw(p)
    write_raw(df.with_columns(charttime=pl.lit("yesterday")), p)
    with pytest.raises(
        InputSchemaError,
        match=r"labevents\.csv\.gz: column 'charttime' should hold a timestamp .*'yesterday'",
    ):
        _run(raw_copy, tmp_path)
    _no_output(tmp_path)


def test_truncated_gzip(raw_copy, tmp_path):
    p = raw_copy / "hosp" / "labevents.csv.gz"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputSchemaError, match=r"labevents\.csv\.gz: .*truncated or corrupt"):
        _run(raw_copy, tmp_path)
    _no_output(tmp_path)


def test_empty_file(raw_copy, tmp_path):
    (raw_copy / "hosp" / "prescriptions.csv.gz").write_bytes(b"")
    with pytest.raises(InputSchemaError, match=r"prescriptions\.csv\.gz: .*(empty|cannot read)"):
        _run(raw_copy, tmp_path)
    _no_output(tmp_path)


def test_header_only(raw_copy, tmp_path):
    p = raw_copy / "hosp" / "diagnoses_icd.csv.gz"
    with gzip.open(p, "wb") as fh:
        fh.write(b"subject_id,hadm_id,seq_num,icd_code,icd_version\n")
    with pytest.raises(InputSchemaError, match=r"diagnoses_icd\.csv\.gz: table has a header but no rows"):
        _run(raw_copy, tmp_path)
    _no_output(tmp_path)


def test_schema_error_keeps_previous_output(raw_copy, tmp_path, synth_small):
    _run(synth_small, tmp_path)
    before = sorted(p.name for p in (tmp_path / "events" / "data").iterdir())
    (raw_copy / "hosp" / "patients.csv.gz").unlink()
    with pytest.raises(InputSchemaError):
        _run(raw_copy, tmp_path)
    assert sorted(p.name for p in (tmp_path / "events" / "data").iterdir()) == before


# ----------------------------------------------------------------------------- row problems
def _rejects(tmp_path):
    return pl.read_parquet(tmp_path / "events" / "quality" / "rejects.parquet")


def _check_row_problem(tmp_path, caplog, table, reason, n_bad, baseline_events, lost_codes):
    rej = _rejects(tmp_path)
    assert rej.height == n_bad, rej
    assert (rej["table"] == table).all() and rej["reason"].str.contains(reason).all()
    assert rej["row_number"].null_count() == 0
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(table in m and f"{n_bad} row(s) rejected" in m for m in warn), warn
    ev = read_events(tmp_path / "events").collect()
    assert ev.height == baseline_events.height - lost_codes
    return ev


def test_unparseable_timestamp(raw_copy, tmp_path, caplog, baseline):
    p = raw_copy / "hosp" / "labevents.csv.gz"
    df = read_raw(p)
    write_raw(
        df.with_columns(
            charttime=pl.when(pl.int_range(pl.len()).is_in([3, 10]))
            .then(pl.lit("2180-13-45 99:00:00"))
            .otherwise("charttime")
        ),
        p,
    )
    s = _run(raw_copy, tmp_path)
    assert s["rejects"]["hosp/labevents"] == 2
    _check_row_problem(tmp_path, caplog, "hosp/labevents", "unparseable charttime", 2, baseline[1], 2)
    assert sorted(_rejects(tmp_path)["row_number"].to_list()) == [4, 11]


def test_discharge_before_admission(raw_copy, tmp_path, caplog, baseline):
    p = raw_copy / "hosp" / "admissions.csv.gz"
    df = read_raw(p)
    bad = df.row(0, named=True)
    write_raw(df.with_columns(dischtime=_at_row(0, "2000-01-01 00:00:00", "dischtime")), p)
    caplog.set_level(logging.WARNING)
    s = _run(raw_copy, tmp_path)
    assert s["rejects"]["hosp/admissions"] == 1
    rej = _rejects(tmp_path)
    adm_rej = rej.filter(pl.col("table") == "hosp/admissions")
    assert adm_rej["reason"].to_list() == ["dischtime before admittime"] and adm_rej[
        "row_number"
    ].to_list() == [1]
    # rows of other tables that belong to that admission (its ICD codes) are rejected too, named as such
    dep = rej.filter(pl.col("table") != "hosp/admissions")
    assert dep.height > 0 and dep["reason"].str.contains("hadm_id not in admissions").all()
    ev = read_events(tmp_path / "events").collect()
    base = baseline[1]
    assert (
        not ev["hadm_id"].is_in([int(bad["hadm_id"])]).filter(ev["code"].str.starts_with("HOSPITAL_")).any()
    )
    # every event of every other admission is kept
    keep = lambda e: e.filter(pl.col("hadm_id").is_null() | (pl.col("hadm_id") != int(bad["hadm_id"])))  # noqa: E731
    assert keep(ev).sort(ev.columns, nulls_last=True).equals(keep(base).sort(base.columns, nulls_last=True))


def test_negative_age(raw_copy, tmp_path, caplog, baseline):
    p = raw_copy / "hosp" / "patients.csv.gz"
    df = read_raw(p)
    write_raw(df.with_columns(anchor_age=_at_row(5, "-3", "anchor_age")), p)
    _run(raw_copy, tmp_path)
    # the patient row yields MEDS_BIRTH and GENDER (its dod, if any, is also dropped with the row)
    sid = int(df["subject_id"][5])
    lost = (
        baseline[1]
        .filter((pl.col("subject_id") == sid) & pl.col("code").str.contains("^(MEDS_BIRTH|GENDER)"))
        .height
    )
    has_dod = df["dod"][5] is not None
    died_in_hosp = (
        baseline[1]
        .filter(
            (pl.col("subject_id") == sid) & (pl.col("code") == "MEDS_DEATH") & pl.col("hadm_id").is_not_null()
        )
        .height
    )
    lost += int(has_dod and not died_in_hosp)
    ev = _check_row_problem(tmp_path, caplog, "hosp/patients", "negative anchor_age", 1, baseline[1], lost)
    assert ev.filter(pl.col("subject_id") == sid).height > 0  # the subject's other events are kept


def test_duplicated_admission_id(raw_copy, tmp_path, caplog, baseline):
    p = raw_copy / "hosp" / "admissions.csv.gz"
    df = read_raw(p)
    write_raw(pl.concat([df, df.slice(2, 1)]), p)
    _run(raw_copy, tmp_path)
    rej = _rejects(tmp_path)
    assert rej["row_number"].to_list() == [df.height + 1]
    _check_row_problem(tmp_path, caplog, "hosp/admissions", "duplicated hadm_id", 1, baseline[1], 0)


def test_non_numeric_lab_value(raw_copy, tmp_path, caplog, baseline):
    p = raw_copy / "hosp" / "labevents.csv.gz"
    df = read_raw(p)
    write_raw(df.with_columns(valuenum=_at_row(7, "high", "valuenum")), p)
    _run(raw_copy, tmp_path)
    ev = _check_row_problem(tmp_path, caplog, "hosp/labevents", "unparseable valuenum", 1, baseline[1], 1)
    assert _rejects(tmp_path)["value"].to_list() == ["high"]
    assert ev.filter(pl.col("code").str.starts_with("LAB//")).height == df.height - 1


def test_strict_raises_and_writes_nothing(raw_copy, tmp_path):
    p = raw_copy / "hosp" / "labevents.csv.gz"
    df = read_raw(p)
    write_raw(df.with_columns(valuenum=_at_row(7, "high", "valuenum")), p)
    with pytest.raises(
        RowQualityError, match=r"1 row\(s\) rejected .*hosp/labevents row 8, column 'valuenum'"
    ):
        _run(raw_copy, tmp_path, strict=True)
    _no_output(tmp_path)


def test_note_text_never_in_messages(raw_copy, tmp_path, caplog):
    p = raw_copy / "note" / "radiology.csv.gz"
    df = read_raw(p)
    secret = "SECRET-PATIENT-STORY"
    df = df.with_columns(
        text=_at_row(0, secret, "text"),
        subject_id=_at_row(0, "not-an-id", "subject_id"),
    )
    write_raw(df, p)
    caplog.set_level(logging.DEBUG)
    _run(raw_copy, tmp_path)
    rej = _rejects(tmp_path)
    assert rej.height == 1 and rej["column"].to_list() == ["subject_id"]
    assert secret not in str(rej.rows()) and all(secret not in r.getMessage() for r in caplog.records)
    # a text column of the wrong type throughout never shows its value
    write_raw(df.with_columns(text=pl.lit(secret), charttime=pl.lit(secret), storetime=pl.lit(None)), p)
    with pytest.raises(InputSchemaError) as e:
        _run(raw_copy, tmp_path / "again")
    assert "charttime" in str(e.value)


# ----------------------------------------------------------------------------- other layouts
def test_parquet_and_plain_csv_inputs_give_the_same_events(raw_copy, tmp_path, baseline):
    """MIMIC-IV tables as parquet (native dtypes) or uncompressed CSV are read like the .csv.gz ones."""
    for i, p in enumerate(sorted(raw_copy.glob("*/*.csv.gz"))):
        df = pl.read_csv(
            p, try_parse_dates=True, schema_overrides={"icd_code": pl.String, "value": pl.String}
        )
        if i % 2 == 0:
            df.write_parquet(p.with_name(p.name.replace(".csv.gz", ".parquet")))
        else:
            p.with_name(p.name.replace(".csv.gz", ".csv")).write_bytes(gzip.open(p).read())
        p.unlink()
    s = _run(raw_copy, tmp_path)
    assert s["rejects_total"] == 0
    ev = read_events(tmp_path / "events").collect()
    assert ev.equals(baseline[1])


def test_meds_input_schema_errors(tmp_path):
    from pipeline.exceptions import MissingInputError

    src = tmp_path / "meds"
    (src / "data").mkdir(parents=True)
    with pytest.raises(InputSchemaError, match=r"no MEDS shards"):
        ingest("meds", src, tmp_path / "events", IngestConfig(), progress=False)
    pl.DataFrame(
        {"subject_id": [1], "time": [None], "kode": ["X"]}, schema_overrides={"time": pl.Datetime("us")}
    ).write_parquet(src / "data" / "0.parquet")
    with pytest.raises(InputSchemaError, match=r"0\.parquet: column 'code' is missing"):
        ingest("meds", src, tmp_path / "events", IngestConfig(), progress=False)
    pl.DataFrame(
        {"subject_id": ["a"], "time": [None], "code": ["X"]}, schema_overrides={"time": pl.Datetime("us")}
    ).write_parquet(src / "data" / "0.parquet")
    with pytest.raises(
        InputSchemaError, match=r"column 'subject_id' has type (large_)?string, expected integer"
    ):
        ingest("meds", src, tmp_path / "events", IngestConfig(), progress=False)
    _no_output(tmp_path)
    with pytest.raises(MissingInputError, match="run `ehr-hcl ingest` first"):
        read_events(tmp_path / "nowhere")


def test_block_reader_cuts_rows_outside_quoted_newlines(tmp_path):
    """Tiny blocks over a CSV whose text fields hold line ends and quotes: same rows as a whole-file read."""
    from pipeline.sources import INT, STRING, TableReader

    texts = [
        f'line one of {i}\nline "two", with comma\r\n\nend' if i % 3 == 0 else f"plain {i}"
        for i in range(200)
    ]
    df = pl.DataFrame({"subject_id": [str(i) for i in range(200)], "text": texts})
    p = tmp_path / "t.csv.gz"
    write_raw(df, p)
    reader = TableReader(p, {"subject_id": INT, "text": STRING}, secret={"text"}, block_size=300)
    batches = list(reader.batches(check_types=True))
    assert len(batches) > 10
    got = pl.concat([b.df for b in batches])
    assert got.equals(df)
    assert [b.first_row for b in batches] == list(np.cumsum([0] + [b.df.height for b in batches[:-1]]) + 1)
