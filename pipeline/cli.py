"""``ehr-hcl``: the command line. A thin shell: parse options, read ``params.yaml``, call one stage.

Every stage also runs on its own with explicit paths (defaults from ``params.yaml``), so it can be scripted
outside DVC. Exit codes: 0 success, 2 a user error (one line on stderr, no traceback), 1 a bug.

Heavy libraries are imported inside the stage functions, so ``ehr-hcl --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("ehr_hcl")

DEFAULT_COHORTS = ("in_hospital_mortality", "readmission_30d")

DESCRIPTION = """\
Hierarchical contrastive learning on EHR: MIMIC-IV or MEDS in; globally shared, partially shared and
modality-private patient representations out; in-hospital mortality and 30-day readmission models
tracked in MLflow. The stages, in pipeline order (DVC runs them for you with `dvc repro`):

  synth     write a synthetic MIMIC-IV-shaped dataset from a known hierarchical latent model
  ingest    MIMIC-IV tables or a MEDS dataset -> a MEDS event dataset (times = when facts became known)
  cohort    a cohort YAML (cohorts/*.yaml) -> labels, subject-level splits, attrition, ACES export
  population every admission of every train subject, unlabelled: the pretraining population
  features  events + labels -> one matrix per modality (codes, labs, medications, notes) + mask
  audit     check features for leakage (nothing after the prediction time, no subject in two splits)
  pretrain  fit HCL and baselines once on the pretraining population
  embed     apply them to a cohort (or fit on its train rows) -> blocks per structure (e.g. codes+labs__0)
  predict   models per representation; AUROC/AUPRC with CIs, calibration, subgroups, survival; MLflow
  fewshot   label efficiency: AUROC against k labelled rows per class (EHRSHOT's k-shot protocol)
  report    a self-contained HTML report per cohort
  compare   the table of MLflow runs, best first (--k K: the few-shot results at k shots per class)
  summary   the table of held_out metrics from metrics/*.json
  ui        open the MLflow UI on this project's store (127.0.0.1)
  run       the whole pipeline in one process, in a workspace folder (e.g. for MIMIC-IV)
"""

EPILOG = """\
examples:
  make demo                                    # whole synthetic pipeline through DVC
  ehr-hcl run --source mimic-iv --input ../shared/data/mimic-iv-demo-2.2 --workspace workspaces/mimic-iv-demo
  ehr-hcl cohort --config cohorts/readmission_30d.yaml --events data/events --output data/cohorts/readmission_30d
  dvc exp run -S embed.hcl.embedding_dim=16    # an experiment with one HCL knob changed
  ehr-hcl compare --task in_hospital_mortality
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        type=Path,
        default=None,
        metavar="FILE",
        help="parameters file whose sections give the defaults (default: ./params.yaml if present)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors; no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


# ---------------------------------------------------------------------------------------------------------
# one function per stage: its own options (the common ones are added by ``build_parser``)


def _synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", type=Path, default=Path("data/raw/synthetic"), help="output folder")
    p.add_argument(
        "--patients", type=int, default=None, help="number of patients (default: params synth.patients)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: params synth.seed)")


def _ingest_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=["mimic-iv", "meds"], default="mimic-iv", help="input layout")
    p.add_argument("--input", type=Path, default=Path("data/raw/synthetic"), help="input folder")
    p.add_argument("--output", type=Path, default=Path("data/events"), help="output MEDS folder")
    p.add_argument("--strict", action="store_true", default=None, help="fail on row-level problems")


def _cohort_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=Path, required=True, help="cohort YAML, e.g. cohorts/in_hospital_mortality.yaml"
    )
    p.add_argument("--events", type=Path, default=Path("data/events"), help="MEDS events folder")
    p.add_argument("--output", type=Path, default=None, help="output folder (default: data/cohorts/<name>)")


def _features_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", type=Path, required=True, help="labels.parquet from `ehr-hcl cohort`")
    p.add_argument("--events", type=Path, default=Path("data/events"), help="MEDS events folder")
    p.add_argument("--output", type=Path, required=True, help="output folder")
    p.add_argument("--no-audit", action="store_true", help="skip the leakage audit (not recommended)")
    p.add_argument(
        "--fitted",
        type=Path,
        default=None,
        help="features folder whose fitted vocabularies, lab scalers and note encoder are applied unchanged "
        "(data/features/pretraining); default: fit them on the train rows of --labels",
    )


def _population_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=Path, default=Path("data/events"), help="MEDS events folder")
    p.add_argument(
        "--cohort-configs",
        nargs="+",
        type=Path,
        default=None,
        help="cohort YAMLs whose (shared) split the population uses (default: params.yaml `cohorts`)",
    )
    p.add_argument("--output", type=Path, default=Path("data/pretraining"), help="output folder")


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--features", type=Path, default=Path("data/features/pretraining"), help="pretraining features folder"
    )
    p.add_argument(
        "--labels", type=Path, default=Path("data/pretraining/population.parquet"), help="population.parquet"
    )
    p.add_argument("--models", type=Path, default=Path("models/pretraining"), help="folder for the fitted models")


def _audit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", type=Path, required=True, help="labels.parquet")
    p.add_argument("--features", type=Path, required=True, help="features folder")
    p.add_argument(
        "--events", type=Path, default=None, help="MEDS events folder (enables label-window checks)"
    )


def _embed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", type=Path, required=True, help="features folder")
    p.add_argument("--labels", type=Path, required=True, help="labels.parquet")
    p.add_argument("--output", type=Path, required=True, help="embeddings folder")
    p.add_argument("--models", type=Path, required=True, help="folder for fitted models and summaries")
    p.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="models fitted on the pretraining population (`ehr-hcl pretrain`), used when embed.fit_on is "
        "pretraining (the default)",
    )


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", required=True, help="cohort name (= the MLflow experiment / task)")
    p.add_argument("--labels", type=Path, required=True, help="labels.parquet")
    p.add_argument("--embeddings", type=Path, required=True, help="embeddings folder")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON to write")
    p.add_argument("--plots", type=Path, required=True, help="folder for plot data and figures")
    p.add_argument(
        "--truth", type=Path, default=None, help="synthetic truth admissions.parquet (oracle AUROC)"
    )
    p.add_argument(
        "--features", type=Path, default=None, help="features folder: MLflow dataset inputs (optional)"
    )
    p.add_argument("--source-name", default="synthetic", help="data source tag for MLflow")


def _fewshot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", required=True, help="cohort name (= the MLflow experiment / task)")
    p.add_argument("--labels", type=Path, required=True, help="labels.parquet")
    p.add_argument("--embeddings", type=Path, required=True, help="embeddings folder")
    p.add_argument(
        "--metrics",
        type=Path,
        required=True,
        help="metrics JSON to write, e.g. metrics/fewshot/<cohort>.json",
    )
    p.add_argument("--plots", type=Path, required=True, help="folder for auroc.csv and auroc.png")
    p.add_argument(
        "--ks",
        nargs="+",
        default=None,
        metavar="K",
        help="shots per class, positive integers and 'all' (default: params fewshot.ks)",
    )


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cohort", required=True, help="cohort name")
    p.add_argument(
        "--workspace", type=Path, default=Path("."), help="workspace root holding data/, models/, …"
    )
    p.add_argument("--output", type=Path, default=None, help="HTML file (default: reports/<cohort>.html)")


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=None, help="one task (experiment name); default: all")
    p.add_argument(
        "--k",
        default=None,
        metavar="K",
        help="show the few-shot results at k shots per class (an integer or 'all') from metrics/fewshot/*.json",
    )
    p.add_argument(
        "--workspace", type=Path, default=Path("."), help="workspace root holding metrics/fewshot/ (with --k)"
    )


def _summary_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", type=Path, default=Path("."), help="workspace root")


def _ui_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=5000, help="port")


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=["synthetic", "mimic-iv", "meds"], default="synthetic")
    p.add_argument("--input", type=Path, default=None, help="input folder (not for synthetic)")
    p.add_argument("--workspace", type=Path, required=True, help="output root, e.g. workspaces/mimic-iv-demo")
    p.add_argument(
        "--cohorts", nargs="+", type=Path, default=None, help="cohort YAMLs (default: the two in cohorts/)"
    )


class _Stage(NamedTuple):
    """One subcommand: its name, one-line help, ``--help`` description and its own options."""

    name: str
    help: str
    description: str | None
    add_arguments: Callable[[argparse.ArgumentParser], None]


# In pipeline order: the order ``ehr-hcl --help`` lists them.
STAGES = (
    _Stage(
        "synth",
        "write a synthetic MIMIC-IV-shaped dataset with known ground truth",
        """\
        Write MIMIC-IV-shaped tables (hosp/*.csv.gz, note/*.csv.gz) generated from a known hierarchical
        latent model, and the ground truth (factors, structures, true outcome probabilities) under truth/.
        Deterministic by seed. Knobs: the `synth` section of params.yaml.""",
        _synth_arguments,
    ),
    _Stage(
        "ingest",
        "MIMIC-IV tables or a MEDS dataset -> MEDS events",
        """\
        Read MIMIC-IV (hosp/, note/ as .csv.gz, .csv or parquet) or an existing MEDS dataset and write a
        MEDS 0.4 dataset: data/*.parquet, metadata/codes.parquet, metadata/dataset.json,
        metadata/subject_splits.parquet. Every event is stamped at the time it became available.
        Rows that cannot be used are quarantined in quality/rejects.parquet and counted; --strict makes
        them errors. Knobs: the `ingest` section of params.yaml.""",
        _ingest_arguments,
    ),
    _Stage(
        "cohort",
        "cohort YAML -> labels, splits, attrition, ACES export",
        """\
        Build one cohort from a YAML definition (see cohorts/README.md for every field):
        labels.parquet (subject_id, hadm_id, prediction_time, boolean_value, split, time-to-event and
        subgroup columns), attrition.json, aces.yaml. The cohort's name is the file's stem.""",
        _cohort_arguments,
    ),
    _Stage(
        "population",
        "every admission of every train subject (no label read): the pretraining population",
        """\
        Write data/pretraining/population.parquet: one row per admission of every train-split subject and
        per reference time of params `pretraining.reference_times` (default: 48 h after admission, and
        discharge), and population.json (counts, attrition). The split is the cohorts' own keyed hash, so no
        tuning or held_out subject of any cohort enters; the cohort YAMLs must agree on `split`.""",
        _population_arguments,
    ),
    _Stage(
        "features",
        "events + labels -> modality matrices, mask, provenance",
        """\
        Build one matrix per modality (codes, labs, medications, notes), row-aligned with the labels,
        from events at or before each prediction time only; vocabularies, statistics and the note
        encoder are fit on train rows, or taken unchanged from --fitted (the pretraining population's
        features, as the DVC pipeline does). Runs the leakage audit afterwards. Knobs: `features` section.""",
        _features_arguments,
    ),
    _Stage("audit", "leakage audit of a features folder against its labels", None, _audit_arguments),
    _Stage(
        "pretrain",
        "fit HCL and baselines once on the pretraining population",
        """\
        Fit each representation method listed in params `embed.methods` (hcl, linear_hcl, concat, pca,
        clip, shared_private, jive) on the pretraining population's features, with the column scaler, and
        save them to --models (JSON + safetensors). No label is read. With `embed.fit_on: cohort` nothing
        is fitted here.""",
        _pretrain_arguments,
    ),
    _Stage(
        "embed",
        "apply the representations to a cohort -> embeddings per structure",
        """\
        Apply each method of params `embed.methods` to the cohort's features and write
        <output>/<method>.parquet with columns <structure>__<k>. With `embed.fit_on: pretraining` (default)
        the models of --pretrained are used unchanged and copied to --models with this cohort's block R²;
        with `embed.fit_on: cohort` they are fit here on the cohort's train rows.""",
        _embed_arguments,
    ),
    _Stage(
        "predict",
        "models per representation; metrics with CIs; survival; MLflow",
        """\
        For every representation in --embeddings and every model in params `predict.models`: fit on
        train, tune on tuning, report on held_out (AUROC/AUPRC with subject-bootstrap CIs, Brier,
        calibration, subgroups, Cox concordance). Logs runs to MLflow; registers the champion.""",
        _predict_arguments,
    ),
    _Stage(
        "fewshot",
        "label efficiency: AUROC against k labelled rows per class",
        """\
        EHRSHOT's k-shot protocol on every representation in --embeddings. For each replicate (params
        `fewshot.replicates`, seed = replicate index combined with `fewshot.seed`) and each k (`fewshot.ks`
        or --ks): draw k positives and k negatives from the train rows and k + k from the tuning rows
        (nested: the first k of one random order per class; capped, and logged, when a class is smaller;
        k = all takes every row), fit each model of `fewshot.models` (logistic with C chosen on the tuning
        draw, group lasso on structure blocks, gradient boosting) and score it on the full held_out split:
        AUROC and AUPRC with subject-bootstrap 95% CIs, the mean and range across replicates, and paired
        differences of each HCL representation against concat and the best non-HCL representation.
        Writes --metrics (JSON), --plots/auroc.csv and auroc.png; logs MLflow runs per representation x
        model x k; prints mean AUROC by representation and k.""",
        _fewshot_arguments,
    ),
    _Stage("report", "self-contained HTML report for one cohort", None, _report_arguments),
    _Stage("compare", "table of MLflow runs (representation x model), best first", None, _compare_arguments),
    _Stage("summary", "table of held_out metrics from metrics/*.json", None, _summary_arguments),
    _Stage("ui", "start the MLflow UI on this project's store", None, _ui_arguments),
    _Stage(
        "run",
        "the whole pipeline in one process, in a workspace folder",
        """\
        Run synth (for --source synthetic), ingest, and for each cohort: cohort, features, audit, embed,
        predict, fewshot, report; then print the summary. Outputs go under --workspace, so a MIMIC-IV run never
        overwrites the DVC demo in the project root.""",
        _run_arguments,
    ),
)


def _add_stage(sub: Any, stage: _Stage) -> argparse.ArgumentParser:
    p = sub.add_parser(
        stage.name,
        help=stage.help,
        description=textwrap.dedent(stage.description or stage.help),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(p)
    stage.add_arguments(p)
    return p


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Build the ``ehr-hcl`` argument parser: one subcommand per entry of ``STAGES``.

    Parameters
    ----------
    argv : list of str, optional
        The command line (default ``sys.argv[1:]``); ``cohort --help`` adds the cohort field reference.

    Returns
    -------
    argparse.ArgumentParser
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="ehr-hcl",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version="ehr-hcl 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="STAGE")
    sub.required = True
    for stage in STAGES:
        p = _add_stage(sub, stage)
        if stage.name == "cohort" and argv[:1] == ["cohort"] and ("-h" in argv or "--help" in argv):
            from pipeline.cohort import CLI_HELP  # the field reference; imported only for `cohort --help`

            p.epilog = CLI_HELP
    return parser


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    # library warnings (scikit-learn, pandas, ...) become log records, printed above any progress bar
    logging.captureWarnings(True)
    for noisy in ("mlflow", "alembic", "urllib3", "sentence_transformers", "httpx", "matplotlib", "filelock"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


#: numeric kernels pinned to one instruction set, so the same inputs give the same bytes on any x86-64 machine
#: with AVX2 (torch and oneDNN would otherwise pick AVX-512 kernels where present, and OpenBLAS its own per
#: CPU family: the note embeddings, the trained representations and the fitted models then differ in their
#: last bits from machine to machine, and `make demo` rewrites dvc.lock). Set a variable to override it.
REPRODUCIBLE_NUMERICS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}


def _set_environment() -> None:
    """Set what every stage expects before any numeric library loads: offline, and reproducible numerics."""
    # Hospital machines are offline: no telemetry, no model hub, no analytics.
    for key, value in {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DVC_NO_ANALYTICS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **REPRODUCIBLE_NUMERICS,
    }.items():
        os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> int:
    """Run one ``ehr-hcl`` command and return its exit code.

    Parameters
    ----------
    argv : list of str, optional
        The command line without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on a user error (one line on stderr), 130 when interrupted.
    """
    _set_environment()  # before any numeric library is imported
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    _setup_logging(args.quiet, args.verbose)
    from pipeline.exceptions import UserError

    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        from pipeline import commands

        handler = getattr(commands, f"cmd_{args.command}")
        with logging_redirect_tqdm():  # log lines go above a running bar, never into it
            handler(args)
    except UserError as exc:
        print(f"ehr-hcl {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ehr-hcl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an HCL input error is a user error too; anything else is a bug
        if _is_hcl_error(exc):
            print(f"ehr-hcl {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        raise
    return 0


def _is_hcl_error(exc: BaseException) -> bool:
    hcl_exceptions = sys.modules.get("hcl.exceptions")
    return hcl_exceptions is not None and isinstance(exc, hcl_exceptions.HCLError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def entry() -> None:
    """Run the console script: ``main`` on ``sys.argv``, a traceback and exit code 1 on a bug."""
    try:
        code = main()
    except Exception:  # a bug: show the traceback, exit 1
        import traceback

        traceback.print_exc()
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    entry()
