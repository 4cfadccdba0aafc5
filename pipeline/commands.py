"""One function per CLI subcommand: read params, call the stage, print what a user wants to see.

Kept apart from :mod:`pipeline.cli` so that ``ehr-hcl --help`` never imports a stage.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from pipeline.exceptions import ConfigError, MissingInputError
from pipeline.params import load_section, read_params
from pipeline.workspace import Workspace, check_name

log = logging.getLogger("ehr_hcl")

DEFAULT_COHORT_FILES = (Path("cohorts/in_hospital_mortality.yaml"), Path("cohorts/readmission_30d.yaml"))


def _progress(args) -> bool:
    return not args.quiet


# --- stages ------------------------------------------------------------------------------------------


def cmd_synth(args) -> dict:
    from pipeline.sources.synthetic import SynthConfig, synthesize

    config = load_section("synth", SynthConfig, args.params, {"patients": args.patients, "seed": args.seed})
    summary = synthesize(config, args.output, progress=_progress(args))
    log.info("synth: wrote %s", args.output)
    return summary


def cmd_ingest(args) -> dict:
    from pipeline.ingest import IngestConfig, ingest

    config = load_section("ingest", IngestConfig, args.params, {"strict": args.strict})
    return ingest(args.source, args.input, args.output, config, progress=_progress(args))


def cmd_cohort(args) -> dict:
    from pipeline.cohort import build_cohort

    name = check_name(Path(args.config).stem)
    output = args.output or Workspace().cohort(name)
    return build_cohort(args.config, args.events, output)


def cmd_features(args) -> dict:
    from pipeline.features import FeaturesConfig, build_features

    config = load_section("features", FeaturesConfig, args.params)
    summary = build_features(args.labels, args.events, args.output, config, progress=_progress(args))
    if not args.no_audit:
        from pipeline.audit import audit

        audit(args.labels, args.output, args.events)
        log.info("audit: passed (no event after its prediction time, no subject in two splits)")
    return summary


def cmd_audit(args) -> dict:
    from pipeline.audit import audit

    result = audit(args.labels, args.features, args.events)
    log.info("audit: passed")
    return result


def cmd_embed(args) -> dict:
    from pipeline.embed import EmbedConfig, embed

    config = load_section("embed", EmbedConfig, args.params)
    return embed(args.features, args.labels, args.output, args.models, config, str(args.params or "params.yaml"))


def cmd_predict(args) -> dict:
    """Run the predict stage for one cohort; returns its metrics dict."""
    from pipeline.predict import PredictConfig, PredictInputs, predict
    from pipeline.tracking import TrackingConfig

    config = load_section("predict", PredictConfig, args.params)
    tracking = load_section("tracking", TrackingConfig, args.params)
    inputs = PredictInputs(
        cohort=args.cohort,
        labels_path=args.labels,
        embeddings_dir=args.embeddings,
        metrics_path=args.metrics,
        plots_dir=args.plots,
        truth_path=args.truth,
        features_dir=getattr(args, "features", None),
        params=read_params(args.params),  # nested; tracking flattens it to embed.hcl.lr-style keys
        tags={"data_source": args.source_name, **_provenance_tags(args.labels)},
        progress=_progress(args),
    )
    return predict(inputs, config, tracking)


def cmd_report(args) -> Path:
    """Write the HTML report of one cohort; returns its path."""
    from pipeline.report import ReportConfig, build_report

    ws = Workspace(args.workspace)
    name = check_name(args.cohort)
    config = load_section("report", ReportConfig, args.params)
    output = args.output or ws.report(name)
    path = build_report(
        name,
        ws.cohort(name),
        ws.features(name),
        ws.embeddings(name),
        ws.models(name),
        ws.metrics(name),
        ws.plots(name),
        output,
        config,
    )
    log.info("report: %s", path)
    return path


def cmd_compare(args) -> None:
    """Print the table of the latest MLflow runs, best first."""
    from pipeline.compare import compare
    from pipeline.tracking import TrackingConfig

    tracking = load_section("tracking", TrackingConfig, args.params)
    print(compare(args.task, tracking))


def cmd_summary(args) -> None:
    print(summary_table(Workspace(args.workspace), params_path=args.params))


def cmd_ui(args) -> None:
    """Serve the MLflow UI on the project's store; exit with the server's code (143 after SIGTERM)."""
    from pipeline.tracking import TrackingConfig, ui

    tracking = load_section("tracking", TrackingConfig, args.params)
    code = ui(tracking, host=args.host, port=args.port)
    if code:
        raise SystemExit(code)


def cmd_run(args) -> None:
    """The whole pipeline in one process, under ``--workspace``."""
    ws = Workspace(args.workspace)
    cohort_files = [Path(p) for p in (args.cohorts or DEFAULT_COHORT_FILES)]
    for path in cohort_files:
        check_name(path.stem)
        if not path.exists():
            raise ConfigError(f"{path}: cohort file not found")
    started = time.perf_counter()
    common = dict(params=args.params, quiet=args.quiet, verbose=args.verbose)

    if args.source == "synthetic":
        if args.input is not None:
            raise ConfigError("--input is not used with --source synthetic (the data is generated)")
        cmd_synth(_ns(output=ws.raw, patients=None, seed=None, **common))
        source, raw = "mimic-iv", ws.raw
    else:
        if args.input is None:
            raise ConfigError(f"--input is required with --source {args.source}")
        source, raw = args.source, args.input
    cmd_ingest(_ns(source=source, input=raw, output=ws.events, strict=None, **common))
    truth = ws.truth if args.source == "synthetic" else None
    source_name = args.source if args.source != "mimic-iv" else f"mimic-iv:{Path(args.input).name}"
    for path in cohort_files:
        name = path.stem
        cmd_cohort(_ns(config=path, events=ws.events, output=ws.cohort(name), **common))
        cmd_features(
            _ns(labels=ws.labels(name), events=ws.events, output=ws.features(name), no_audit=False, **common)
        )
        cmd_embed(
            _ns(features=ws.features(name), labels=ws.labels(name), output=ws.embeddings(name), models=ws.models(name), **common)
        )
        cmd_predict(
            _ns(
                cohort=experiment_name(ws, name),
                labels=ws.labels(name),
                embeddings=ws.embeddings(name),
                metrics=ws.metrics(name),
                plots=ws.plots(name),
                truth=truth,
                source_name=source_name,
                **common,
            )
        )
        cmd_report(_ns(cohort=name, workspace=ws.root, output=None, **common))
    print(summary_table(ws, [p.stem for p in cohort_files], params_path=args.params))
    log.info("run: finished in %.0f s", time.perf_counter() - started)


# --- helpers ------------------------------------------------------------------------------------------


def experiment_name(ws: Workspace, cohort: str) -> str:
    """MLflow experiment (= task) name: the cohort, prefixed by the workspace folder outside the project root."""
    root = ws.root.resolve()
    if root == Path.cwd().resolve():
        return cohort
    return f"{root.name}.{cohort}"


def _ns(**kwargs: Any):
    import argparse

    return argparse.Namespace(**kwargs)


def _provenance_tags(labels: Path) -> dict[str, str]:
    """Hash of the cohort definition the labels were built from (the ``cohort.yaml`` written beside them).

    The commit is tagged by the predict stage itself (:func:`pipeline.workspace.git_commit`).
    """
    from pipeline.cohort.labels import cohort_spec_path

    path = cohort_spec_path(labels)
    return {"cohort_yaml_sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]} if path.exists() else {}


def summary_table(ws: Workspace, cohorts: list[str] | None = None, params_path: Path | None = None) -> str:
    """Held_out metrics per task x representation x model from metrics JSON, plus where things are."""
    from pipeline.results import summarize_metrics

    metrics_dir = ws.root / "metrics"
    if cohorts is None:
        cohorts = sorted(p.stem for p in metrics_dir.glob("*.json")) if metrics_dir.exists() else []
    if not cohorts:
        raise MissingInputError(f"{metrics_dir}: no metrics yet; run `make demo` or `ehr-hcl run` first")
    lines = ["held_out results (95% CIs by subject bootstrap)", ""]
    for cohort in cohorts:
        lines += [summarize_metrics(ws.metrics(cohort), cohort), ""]
    lines.append("reports:      " + ", ".join(str(ws.report(c)) for c in cohorts))
    lines.append(f"MLflow store: {resolve_store_uri(params_path)}")
    lines.append("MLflow UI:    .venv/bin/ehr-hcl ui   (then open http://127.0.0.1:5000)")
    return "\n".join(lines)


def resolve_store_uri(params_path: Path | None = None) -> str:
    """The MLflow tracking URI the pipeline logs to (absolute)."""
    from pipeline.tracking import TrackingConfig, resolve_tracking_uri

    return resolve_tracking_uri(load_section("tracking", TrackingConfig, params_path))
