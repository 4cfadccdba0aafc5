"""Bad inputs at every entry point of ``ehr-hcl``: each must end with exit code 2, one ``ehr-hcl <stage>:
error: ...`` line naming the file, the field/column/key and the offending value, no traceback, and no output
left for that stage. Row-level problems in raw tables are quarantined (exit 0, counted in
quality/rejects.parquet, warned about) and become exit-2 errors under ``--strict``.

Each case builds a corrupted copy of a small synthetic dataset (see conftest.py) in its own tmp folder and
runs the CLI in a subprocess, as a user would.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.bad_inputs.conftest import BASE_PARAMS, COHORT, copy_from, run_cli


@dataclass
class Case:
    id: str
    stage: str
    build: Callable[[Path, Path], list]  # (base, tmp) -> CLI args (cwd = tmp)
    must: list[str]  # substrings of the error line (file, field/key, value)
    outputs: list[str] = field(default_factory=list)  # paths (relative to tmp) that must not exist after
    xfail: str | None = None


# --- helpers -----------------------------------------------------------------------------------------


def read_table(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema=False)


def write_table(df: pl.DataFrame, path: Path) -> None:
    with gzip.open(path, "wb") as fh:
        df.write_csv(fh)


def edit_raw(table: str, fn: Callable[[pl.DataFrame], pl.DataFrame], folder: str = "hosp"):
    def build(base: Path, tmp: Path, strict: bool = False) -> list:
        raw = copy_from(base, "raw", tmp)
        path = raw / folder / f"{table}.csv.gz"
        write_table(fn(read_table(path)), path)
        return ["ingest", "--input", "raw", "--output", "out", *(["--strict"] if strict else [])]

    return build


def raw_file(table: str, write: Callable[[Path], None], folder: str = "hosp", suffix: str = ".csv.gz"):
    def build(base: Path, tmp: Path) -> list:
        raw = copy_from(base, "raw", tmp)
        (raw / folder / f"{table}.csv.gz").unlink()
        write(raw / folder / f"{table}{suffix}")
        return ["ingest", "--input", "raw", "--output", "out"]

    return build


def set_first(col: str, value: str, n: int = 1):
    return lambda df: df.with_columns(
        pl.when(pl.int_range(pl.len()) < n).then(pl.lit(value)).otherwise(pl.col(col)).alias(col)
    )


def truncated_gzip(path: Path) -> None:
    data = gzip.compress(
        b"subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod\n" + b"1,M,50,2150,x,\n" * 5000
    )
    path.write_bytes(data[: len(data) // 2])


def meds(fn: Callable[[pl.DataFrame], pl.DataFrame] | None = None, empty: bool = False):
    def build(base: Path, tmp: Path) -> list:
        ev = copy_from(base, "events", tmp)
        for shard in (ev / "data").glob("*.parquet"):
            if empty:
                shard.unlink()
            else:
                fn(pl.read_parquet(shard)).write_parquet(shard)
        return ["ingest", "--source", "meds", "--input", "events", "--output", "out"]

    return build


def cohort_yaml(edit: Callable[[dict], dict] | None = None, text: str | None = None, name: str = "bad.yaml"):
    def build(base: Path, tmp: Path) -> list:
        path = tmp / name
        if text is not None:
            path.write_text(text)
        else:
            path.write_text(yaml.safe_dump(edit(yaml.safe_load(COHORT.read_text()))))
        return ["cohort", "--config", path.name, "--events", base / "events", "--output", "out"]

    return build


def nested(d: dict, dotted: str, value) -> dict:
    *parents, leaf = dotted.split(".")
    node = d
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return d


def params(dotted: str, value, stage: str = "embed"):
    def build(base: Path, tmp: Path) -> list:
        p = nested(yaml.safe_load(BASE_PARAMS), dotted, value)
        (tmp / "params.yaml").write_text(yaml.safe_dump(p))
        if stage == "synth":
            return ["synth", "--output", "out", "--params", "params.yaml"]
        return _embed_args(base)

    return build


def _embed_args(base: Path, features: Path | None = None, labels: Path | None = None) -> list:
    return [
        "embed",
        "--features",
        features or base / "feats",
        "--labels",
        labels or base / "cohort" / "labels.parquet",
        "--output",
        "emb",
        "--models",
        "models",
        "--params",
        "params.yaml",
    ]


def features_without(modality: str):
    def build(base: Path, tmp: Path) -> list:
        feats = copy_from(base, "feats", tmp)
        (feats / f"{modality}.parquet").unlink()
        (tmp / "params.yaml").write_text(BASE_PARAMS)
        return _embed_args(base, features=feats)

    return build


def labels_short(base: Path, tmp: Path) -> list:
    labels = pl.read_parquet(base / "cohort" / "labels.parquet")
    labels.head(labels.height - 5).write_parquet(tmp / "labels.parquet")
    (tmp / "params.yaml").write_text(BASE_PARAMS)
    return _embed_args(base, labels=tmp / "labels.parquet")


def leaky_provenance(base: Path, tmp: Path) -> list:
    feats = copy_from(base, "feats", tmp)
    prov = pl.read_parquet(feats / "provenance.parquet")
    prov = prov.with_columns(
        pl.when(pl.int_range(pl.len()) == 3)
        .then(pl.col("prediction_time") + pl.duration(hours=1))
        .otherwise(pl.col("labs__max_time"))
        .alias("labs__max_time")
    )
    prov.write_parquet(feats / "provenance.parquet")
    return ["audit", "--labels", base / "cohort" / "labels.parquet", "--features", feats]


def labels_edit(fn: Callable[[pl.DataFrame], pl.DataFrame], stage: str = "features"):
    def build(base: Path, tmp: Path) -> list:
        fn(pl.read_parquet(base / "cohort" / "labels.parquet")).write_parquet(tmp / "labels.parquet")
        (tmp / "params.yaml").write_text(BASE_PARAMS)
        if stage == "audit":
            return ["audit", "--labels", "labels.parquet", "--features", base / "feats"]
        return [
            "features",
            "--labels",
            "labels.parquet",
            "--events",
            base / "events",
            "--output",
            "out",
            "--params",
            "params.yaml",
        ]

    return build


def subject_in_two_splits(d: pl.DataFrame) -> pl.DataFrame:
    sid = d["subject_id"][0]
    other = "held_out" if d["split"][0] != "held_out" else "train"
    first_two = d.filter(pl.col("subject_id") == sid).height >= 2
    assert first_two, "the fixture's first subject needs two admissions"
    return d.with_columns(
        pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(other)).otherwise(pl.col("split")).alias("split")
    )


def features_missing_events(base: Path, tmp: Path) -> list:
    (tmp / "params.yaml").write_text(BASE_PARAMS)
    return [
        "features",
        "--labels",
        base / "cohort" / "labels.parquet",
        "--events",
        "no_such_events",
        "--output",
        "out",
        "--params",
        "params.yaml",
    ]


def predict_missing_embeddings(base: Path, tmp: Path) -> list:
    (tmp / "params.yaml").write_text(BASE_PARAMS)
    return [
        "predict",
        "--cohort",
        "in_hospital_mortality",
        "--labels",
        base / "cohort" / "labels.parquet",
        "--embeddings",
        "no_such_embeddings",
        "--metrics",
        "m.json",
        "--plots",
        "plots",
        "--params",
        "params.yaml",
    ]


def report_unbuilt_cohort(base: Path, tmp: Path) -> list:
    (tmp / "params.yaml").write_text(BASE_PARAMS)
    return [
        "report",
        "--cohort",
        "in_hospital_mortality",
        "--workspace",
        ".",
        "--output",
        "r.html",
        "--params",
        "params.yaml",
    ]


def synth_negative_patients(base: Path, tmp: Path) -> list:
    (tmp / "params.yaml").write_text(BASE_PARAMS)
    return ["synth", "--patients", "-5", "--output", "out", "--params", "params.yaml"]


# --- the cases ---------------------------------------------------------------------------------------

ING = ["out"]
CASES = [
    # raw tables: schema problems
    Case(
        "raw-missing-column",
        "ingest",
        edit_raw("admissions", lambda d: d.drop("admittime")),
        ["admissions", "admittime"],
        ING,
    ),
    Case(
        "raw-wrong-dtype-throughout",
        "ingest",
        edit_raw("patients", lambda d: d.with_columns(pl.lit("old").alias("anchor_age"))),
        ["patients", "anchor_age", "old"],
        ING,
    ),
    Case(
        "raw-subject-id-not-integer",
        "ingest",
        edit_raw("admissions", lambda d: d.with_columns(("S" + pl.col("subject_id")).alias("subject_id"))),
        ["admissions", "subject_id", "S1000000"],
        ING,
    ),
    Case("raw-truncated-gzip", "ingest", raw_file("patients", truncated_gzip), ["patients.csv.gz"], ING),
    Case(
        "raw-empty-file",
        "ingest",
        raw_file("admissions", lambda p: p.write_bytes(b""), suffix=".csv"),
        ["admissions.csv", "empty"],
        ING,
    ),
    Case(
        "raw-empty-gzip",
        "ingest",
        raw_file("admissions", lambda p: p.write_bytes(gzip.compress(b""))),
        ["admissions.csv.gz", "empty"],
        ING,
    ),
    Case(
        "raw-header-only",
        "ingest",
        edit_raw("admissions", lambda d: d.head(0)),
        ["admissions", "no rows"],
        ING,
    ),
    Case(
        "raw-zero-byte-parquet",
        "ingest",
        raw_file("labevents", lambda p: p.write_bytes(b""), suffix=".parquet"),
        ["labevents.parquet"],
        ING,
    ),
    Case("raw-missing-table", "ingest", raw_file("patients", lambda p: None), ["patients"], ING),
    # MEDS input
    Case("meds-missing-code-column", "ingest", meds(lambda d: d.drop("code")), ["0.parquet", "code"], ING),
    Case(
        "meds-time-as-string",
        "ingest",
        meds(lambda d: d.with_columns(pl.col("time").dt.strftime("%d/%m/%Y %H:%M"))),
        ["0.parquet", "time", "str"],
        ING,
    ),
    Case("meds-empty-data-folder", "ingest", meds(empty=True), ["data"], ING),
    # cohort YAML
    Case(
        "cohort-unknown-key",
        "cohort",
        cohort_yaml(
            lambda c: {**{k: v for k, v in c.items() if k != "population"}, "populaton": c["population"]}
        ),
        ["bad.yaml", "populaton", "population"],
        ["out"],
    ),
    Case(
        "cohort-wrong-type",
        "cohort",
        cohort_yaml(lambda c: nested(c, "population.min_age", "adult")),
        ["bad.yaml", "min_age", "adult"],
        ["out"],
    ),
    Case(
        "cohort-bad-duration",
        "cohort",
        cohort_yaml(lambda c: nested(c, "prediction.offset", "48 parsecs")),
        ["bad.yaml", "offset", "48 parsecs"],
        ["out"],
    ),
    Case(
        "cohort-negative-duration",
        "cohort",
        cohort_yaml(lambda c: nested(c, "prediction.offset", "-48h")),
        ["bad.yaml", "offset", "-48h"],
        ["out"],
    ),
    Case(
        "cohort-contradictory-ages",
        "cohort",
        cohort_yaml(lambda c: nested(nested(c, "population.min_age", 65.0), "population.max_age", 40.0)),
        ["bad.yaml", "min_age", "max_age"],
        ["out"],
    ),
    Case(
        "cohort-contradictory-split",
        "cohort",
        cohort_yaml(lambda c: nested(c, "split.fractions", [0.7, 0.7, 0.7])),
        ["bad.yaml", "fractions"],
        ["out"],
    ),
    Case(
        "cohort-python-object-yaml",
        "cohort",
        cohort_yaml(text="description: !!python/object/apply:os.system ['touch pwned']\n"),
        ["bad.yaml", "python/object"],
        ["out", "pwned"],
    ),
    Case(
        "cohort-name-escapes-project", "cohort", cohort_yaml(lambda c: c, name="..x.yaml"), ["..x"], ["out"]
    ),
    Case(
        "cohort-empty-after-criteria",
        "cohort",
        cohort_yaml(lambda c: nested(c, "population.min_age", 150.0)),
        ["bad.yaml", "min_age"],
        ["out"],
    ),
    Case("cohort-not-a-mapping", "cohort", cohort_yaml(text="- just\n- a list\n"), ["bad.yaml"], ["out"]),
    # params.yaml
    Case(
        "params-unknown-section-key",
        "embed",
        params("embed.methodz", ["pca"]),
        ["params.yaml", "embed.methodz", "did you mean 'methods'"],
        ["emb", "models"],
    ),
    Case(
        "params-unknown-representation",
        "embed",
        params("embed.methods", ["pca", "hlc"]),
        ["params.yaml", "methods", "hlc"],
        ["emb", "models"],
    ),
    Case(
        "params-unknown-hcl-parameter",
        "embed",
        params("embed", {"methods": ["hcl"], "fit_on": "cohort", "hcl": {"embeding_dim": 4}}),
        ["params.yaml", "embed.hcl.embeding_dim", "embedding_dim"],
        ["emb", "models"],
    ),
    Case(
        "params-pca-rank-too-large",
        "embed",
        params("embed.pca.n_components", 100000),
        ["n_components", "100000", "features"],
        ["emb", "models"],
    ),
    Case(
        "params-linear-hcl-rank-too-large",
        "embed",
        params("embed", {"methods": ["linear_hcl"], "fit_on": "cohort", "linear_hcl": {"ranks": 100000}}),
        ["rank 100000", "codes", "lower ranks"],
        ["emb", "models"],
    ),
    Case(
        "params-wrong-type",
        "synth",
        params("synth.patients", "many", stage="synth"),
        ["params.yaml", "patients", "many"],
        ["out"],
    ),
    # model inputs
    Case(
        "features-modality-file-missing",
        "embed",
        features_without("labs"),
        ["labs.parquet"],
        ["emb", "models"],
    ),
    Case(
        "labels-features-row-mismatch", "embed", labels_short, ["labels.parquet", "rows"], ["emb", "models"]
    ),
    Case(
        "features-labels-missing-column",
        "features",
        labels_edit(lambda d: d.drop("prediction_time")),
        ["labels.parquet", "prediction_time"],
        ["out"],
    ),
    Case("features-events-folder-missing", "features", features_missing_events, ["no_such_events"], ["out"]),
    Case(
        "audit-subject-in-two-splits",
        "audit",
        labels_edit(subject_in_two_splits, stage="audit"),
        ["labels.parquet", "split"],
        [],
    ),
    Case(
        "predict-embeddings-missing",
        "predict",
        predict_missing_embeddings,
        ["no_such_embeddings"],
        ["m.json", "plots"],
    ),
    Case("report-cohort-not-built", "report", report_unbuilt_cohort, ["in_hospital_mortality"], ["r.html"]),
    Case("synth-negative-patients", "synth", synth_negative_patients, ["patients", "-5"], ["out"]),
    Case("audit-event-after-prediction-time", "audit", leaky_provenance, ["provenance.parquet", "labs"], []),
]


def _check_error(proc, stage: str, must: list[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert lines, "nothing on stderr"
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    last = lines[-1]
    print(last)  # shown with `pytest -s`: the message a user sees
    assert last.startswith(f"ehr-hcl {stage}: error: "), last
    for s in must:
        assert s.lower() in last.lower(), f"{s!r} not in: {last}"
    return last


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)] if c.xfail else [])
        for c in CASES
    ],
)
def test_bad_input(case: Case, base: Path, tmp_path: Path) -> None:
    args = case.build(base, tmp_path)
    proc = run_cli([*args, "--quiet"], tmp_path)
    _check_error(proc, case.stage, case.must)
    for out in case.outputs:
        assert not (tmp_path / out).exists(), f"{out} left behind"


# --- row-level problems: quarantined, counted, warned; --strict makes them errors -------------------


@dataclass
class RowCase:
    id: str
    table: str
    edit: Callable[[pl.DataFrame], pl.DataFrame]
    column: str
    n: int
    reason: str = ""  # a substring every reject's reason must hold


ROW_CASES = [
    RowCase("unparseable-timestamp", "admissions", set_first("admittime", "not a date"), "admittime", 1),
    RowCase(
        "timezone-mixed-timestamps",
        "labevents",
        set_first("charttime", "2150-01-01T10:00:00+02:00", 3),
        "charttime",
        3,
        "timezone offset",
    ),
    RowCase("negative-age", "patients", set_first("anchor_age", "-4"), "anchor_age", 1),
    RowCase(
        "discharge-before-admission",
        "admissions",
        lambda d: d.with_columns(
            pl.when(pl.int_range(pl.len()) < 2)
            .then(pl.lit("1900-01-01 00:00:00"))
            .otherwise(pl.col("dischtime"))
            .alias("dischtime")
        ),
        "dischtime",
        2,
    ),
    RowCase("duplicate-admission-id", "admissions", lambda d: pl.concat([d, d.head(1)]), "hadm_id", 1),
    RowCase(
        "nan-inf-lab-values",
        "labevents",
        lambda d: d.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.lit("nan"))
            .when(pl.int_range(pl.len()) == 1)
            .then(pl.lit("inf"))
            .otherwise(pl.col("valuenum"))
            .alias("valuenum")
        ),
        "valuenum",
        2,
        "finite number",
    ),
    RowCase(
        "non-numeric-lab-value",
        "labevents",
        set_first("valuenum", "pending", 4),
        "valuenum",
        4,
        "finite number",
    ),
]


def _corrupt(base: Path, tmp: Path, rc: RowCase) -> None:
    raw = copy_from(base, "raw", tmp)
    path = raw / "hosp" / f"{rc.table}.csv.gz"
    write_table(rc.edit(read_table(path)), path)


@pytest.mark.parametrize("rc", ROW_CASES, ids=[r.id for r in ROW_CASES])
def test_row_problem_quarantined(rc: RowCase, base: Path, tmp_path: Path) -> None:
    _corrupt(base, tmp_path, rc)
    proc = run_cli(["ingest", "--input", "raw", "--output", "out", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    rejects = pl.read_parquet(tmp_path / "out" / "quality" / "rejects.parquet")
    base_rejects = pl.read_parquet(base / "events" / "quality" / "rejects.parquet")

    def pick(r: pl.DataFrame) -> pl.DataFrame:
        return r.filter(pl.col("table").str.ends_with(rc.table) & (pl.col("column") == rc.column))

    mine, theirs = pick(rejects), pick(base_rejects)
    assert mine.height - theirs.height == rc.n, rejects
    if rc.reason:
        assert mine["reason"].str.contains(rc.reason, literal=True).all(), mine
    warning = [ln for ln in proc.stderr.splitlines() if rc.table in ln and "rejected" in ln]
    assert warning, proc.stderr


@pytest.mark.parametrize("rc", ROW_CASES, ids=[r.id for r in ROW_CASES])
def test_row_problem_strict(rc: RowCase, base: Path, tmp_path: Path) -> None:
    _corrupt(base, tmp_path, rc)
    proc = run_cli(["ingest", "--input", "raw", "--output", "out", "--strict", "--quiet"], tmp_path)
    _check_error(proc, "ingest", [rc.table, rc.column])
    assert not (tmp_path / "out").exists()


def test_non_utf8_notes(base: Path, tmp_path: Path) -> None:
    """Latin-1 bytes in a note: a clean encoding error (not "truncated"), the bytes not echoed, no output."""
    raw = copy_from(base, "raw", tmp_path)
    path = raw / "note" / "discharge.csv.gz"
    data = gzip.decompress(path.read_bytes()).replace(
        b"DISCHARGE SUMMARY.", b"DISCHARGE SUMMARY \xe9\xff.", 1
    )
    path.write_bytes(gzip.compress(data))
    proc = run_cli(["ingest", "--input", "raw", "--output", "out", "--quiet"], tmp_path)
    last = _check_error(proc, "ingest", ["discharge.csv.gz", "not valid utf-8", "row"])
    assert "truncated" not in last and "DISCHARGE" not in last
    assert not (tmp_path / "out").exists()


def test_unsorted_meds_shards(base: Path, tmp_path: Path) -> None:
    """An unsorted MEDS shard is accepted and re-sorted: the output equals the sorted input's output."""
    ev = copy_from(base, "events", tmp_path)
    for shard in (ev / "data").glob("*.parquet"):
        pl.read_parquet(shard).sample(fraction=1.0, shuffle=True, seed=1).write_parquet(shard)
    good = run_cli(
        ["ingest", "--source", "meds", "--input", base / "events", "--output", "good", "--quiet"], tmp_path
    )
    proc = run_cli(
        ["ingest", "--source", "meds", "--input", "events", "--output", "out", "--quiet"], tmp_path
    )
    assert good.returncode == 0 and proc.returncode == 0, proc.stderr[-3000:]
    a = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "good" / "data").glob("*.parquet"))])
    b = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "out" / "data").glob("*.parquet"))])
    assert a.select("subject_id", "time").equals(b.select("subject_id", "time"))
    assert a.sort(a.columns, nulls_last=True).equals(b.sort(b.columns, nulls_last=True))


def test_failed_rerun_keeps_previous_output(base: Path, tmp_path: Path) -> None:
    """A bad input on a rerun leaves the previous good output of that stage unchanged."""
    raw = copy_from(base, "raw", tmp_path)
    shutil.copytree(base / "events", tmp_path / "out")
    before = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    (raw / "hosp" / "patients.csv.gz").write_bytes(b"")
    proc = run_cli(["ingest", "--input", "raw", "--output", "out", "--quiet"], tmp_path)
    _check_error(proc, "ingest", ["patients"])
    after = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert before == after


def test_case_count() -> None:
    n = len(CASES) + 2 * len(ROW_CASES) + 3
    print(f"\nbad-input cases: {n}")
    assert n >= 30


def test_error_stands_alone_after_a_progress_bar(base: Path, tmp_path: Path) -> None:
    """With progress bars on, a truncated labevents.csv.gz gives an error on its own line, no bar text on it."""
    raw = copy_from(base, "raw", tmp_path)
    path = raw / "hosp" / "labevents.csv.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # the first 1 MiB blocks read fine, so a bar is drawn
    (tmp_path / "small_blocks.yaml").write_text("ingest:\n  block_mb: 1\n")
    # not --quiet: bars are drawn
    proc = run_cli(["ingest", "--input", "raw", "--output", "out", "--params", "small_blocks.yaml"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    error_lines = [ln for ln in proc.stderr.split("\n") if "error:" in ln]
    assert len(error_lines) == 1, proc.stderr[-3000:]
    # what a terminal shows of that line: the text after the last carriage return
    shown = error_lines[0].split("\r")[-1]
    assert shown.startswith("ehr-hcl ingest: error:") and "labevents" in shown, repr(error_lines[0])
    assert "row/s" not in shown and "it/s" not in shown
    assert "\x1b[A" not in error_lines[0]  # no cursor-up that would print it over the bar's line
    assert "ingest hosp/labevents" in proc.stderr  # the bar was drawn (else this test proves nothing)
    assert not (tmp_path / "out").exists()


def test_library_warnings_go_through_the_logger() -> None:
    """A warnings.warn inside a stage is printed as a log line (so tqdm can keep it off its bar)."""
    import logging
    import warnings

    from pipeline.cli import _setup_logging

    _setup_logging(quiet=False, verbose=False)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("py.warnings").addHandler(handler)
    try:
        warnings.warn("a library warning", UserWarning, stacklevel=1)
    finally:
        logging.getLogger("py.warnings").removeHandler(handler)
        logging.captureWarnings(False)
    assert any("a library warning" in r.getMessage() for r in records)
