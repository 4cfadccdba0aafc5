"""One function per CLI subcommand: read params, call the stage, print what a user wants to see.

Kept apart from :mod:`pipeline.cli` so that ``ehr-hcl --help`` never imports a stage.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from pipeline.exceptions import ConfigError, MissingInputError
from pipeline.params import load_section, read_params
from pipeline.workspace import Workspace, check_name

log = logging.getLogger("ehr_hcl")

DEFAULT_COHORT_FILES = (Path("cohorts/in_hospital_mortality.yaml"), Path("cohorts/readmission_30d.yaml"))


# --- stages: each a call of the stage function with its typed config, shared by its CLI handler and `run`


def synth_step(
    output: Path, params: Path | None, progress: bool, patients: int | None = None, seed: int | None = None
) -> dict:
    """Generate the synthetic MIMIC-IV tables (``synth`` section of params, overridden by the arguments).

    Parameters
    ----------
    output : Path
        Folder for the tables and ``truth/``.
    params : Path or None
        Parameters file (None: ``./params.yaml`` if present).
    progress : bool
        Show progress bars.
    patients, seed : int, optional
        Override ``synth.patients`` and ``synth.seed``.

    Returns
    -------
    dict
        The stage summary of :func:`pipeline.sources.synthetic.synthesize`.
    """
    from pipeline.sources.synthetic import SynthConfig, synthesize

    config = load_section("synth", SynthConfig, params, {"patients": patients, "seed": seed})
    summary = synthesize(config, output, progress=progress)
    log.info("synth: wrote %s", output)
    return summary


def ingest_step(
    source: str, input: Path, output: Path, params: Path | None, progress: bool, strict: bool | None = None
) -> dict:
    """Turn a source (MIMIC-IV layout or MEDS) into the MEDS events contract.

    Parameters
    ----------
    source : {"mimic-iv", "meds"}
        Layout of ``input``.
    input : Path
        The source's folder.
    output : Path
        MEDS events folder to write.
    params : Path or None
        Parameters file (None: ``./params.yaml`` if present).
    progress : bool
        Show progress bars.
    strict : bool, optional
        Override ``ingest.strict``: a malformed row stops the run instead of being quarantined.

    Returns
    -------
    dict
        The stage summary of :func:`pipeline.ingest.ingest`.
    """
    from pipeline.ingest import IngestConfig, ingest

    config = load_section("ingest", IngestConfig, params, {"strict": strict})
    return ingest(source, input, output, config, progress=progress)


def cohort_step(config: Path, events: Path, output: Path | None) -> dict:
    """Build one cohort's labels from its YAML definition.

    Parameters
    ----------
    config : Path
        Cohort YAML; its stem is the cohort's name.
    events : Path
        MEDS events folder.
    output : Path or None
        Output folder (None: ``data/cohorts/<name>``).

    Returns
    -------
    dict
        The stage summary of :func:`pipeline.cohort.build_cohort`.
    """
    from pipeline.cohort import build_cohort

    name = check_name(Path(config).stem)
    return build_cohort(config, events, output or Workspace().cohort(name))


def population_step(events: Path, cohort_configs: list[Path] | None, output: Path, params: Path | None) -> dict:
    """Build the pretraining population: every admission of every train subject, no label read.

    Parameters
    ----------
    events : Path
        MEDS events folder.
    cohort_configs : list of Path or None
        Cohort YAMLs whose shared ``split`` the population uses (None: params.yaml ``cohorts``).
    output : Path
        Folder to write (``population.parquet``, ``population.json``).
    params : Path or None
        Parameters file whose ``pretraining`` section is the config.

    Returns
    -------
    dict
        The stage summary of :func:`pipeline.cohort.pretraining.build_population`.
    """
    from pipeline.cohort.pretraining import PretrainingConfig, build_population

    config = load_section("pretraining", PretrainingConfig, params)
    if cohort_configs is None:
        names = read_params(params).get("cohorts") or [p.stem for p in DEFAULT_COHORT_FILES]
        cohort_configs = [Path("cohorts") / f"{check_name(n)}.yaml" for n in names]
    return build_population(events, cohort_configs, output, config)


def features_step(
    labels: Path,
    events: Path,
    output: Path,
    params: Path | None,
    progress: bool,
    audit: bool = True,
    fitted: Path | None = None,
) -> dict:
    """Build the modality features of one cohort, then audit them for leakage.

    Parameters
    ----------
    labels : Path
        ``labels.parquet`` of the cohort.
    events : Path
        MEDS events folder.
    output : Path
        Features folder to write.
    params : Path or None
        Parameters file whose ``features`` section is the config (None: ``./params.yaml`` if present).
    progress : bool
        Show the note-embedding progress bar.
    audit : bool
        Run the leakage audit afterwards.
    fitted : Path or None
        Features folder whose fitted vocabularies and scalers are applied unchanged (the pretraining
        population's); None fits them on the train rows of ``labels``.

    Returns
    -------
    dict
        The stage summary of :func:`pipeline.features.build_features`.
    """
    from pipeline.features import FeaturesConfig, build_features

    config = load_section("features", FeaturesConfig, params)
    summary = build_features(labels, events, output, config, progress=progress, fitted_dir=fitted)
    if audit:
        from pipeline.audit import audit as audit_features

        audit_features(labels, output, events)
        log.info("audit: passed (no event after its prediction time, no subject in two splits)")
    return summary


def pretrain_step(features: Path, labels: Path, models: Path, params: Path | None) -> dict:
    """Fit every representation method once on the pretraining population's features.

    With ``embed.fit_on: cohort`` nothing is fitted here: ``models`` only records that choice.

    Parameters
    ----------
    features : Path
        Features folder of the pretraining population.
    labels : Path
        ``population.parquet`` (every row is a train row).
    models : Path
        Folder for the fitted models, their scaler and summaries.
    params : Path or None
        Parameters file whose ``embed`` section is the config.

    Returns
    -------
    dict
        The summary of :func:`pipeline.embed.fit_models`, or ``{"fit_on": "cohort"}``.
    """
    from pipeline.embed import EmbedConfig, fit_models
    from pipeline.io import atomic_dir, write_json

    config = load_section("embed", EmbedConfig, params)
    if config.fit_on == "cohort":
        log.info("pretrain: embed.fit_on is 'cohort'; each cohort fits its own representations")
        with atomic_dir(models) as tmp:
            write_json({"fit_on": "cohort"}, tmp / "fitted_on.json")
        return {"fit_on": "cohort"}
    return fit_models(features, labels, models, config, str(params or "params.yaml"))


def embed_step(
    features: Path, labels: Path, output: Path, models: Path, params: Path | None, pretrained: Path | None = None
) -> dict:
    """Write one cohort's embeddings: with the pretrained representations, or fitted on its train rows.

    Parameters
    ----------
    features : Path
        Features folder of the cohort.
    labels : Path
        ``labels.parquet`` of the cohort (the train rows fit the methods).
    output : Path
        Embeddings folder to write (``<method>.parquet``).
    models : Path
        Folder for the fitted models and their summaries.
    params : Path or None
        Parameters file whose ``embed`` section is the config (None: ``./params.yaml`` if present).
    pretrained : Path or None
        Models fitted on the pretraining population (``embed.fit_on: pretraining``).

    Returns
    -------
    dict
        The stage summary of :func:`pipeline.embed.embed`.
    """
    from pipeline.embed import EmbedConfig, embed

    config = load_section("embed", EmbedConfig, params)
    return embed(features, labels, output, models, config, str(params or "params.yaml"), pretrained=pretrained)


def predict_step(
    cohort: str,
    labels: Path,
    embeddings: Path,
    metrics: Path,
    plots: Path,
    params: Path | None,
    progress: bool,
    truth: Path | None = None,
    source_name: str | None = None,
    features: Path | None = None,
) -> dict:
    """Fit and evaluate the downstream models on every representation; log them to MLflow.

    Parameters
    ----------
    cohort : str
        Cohort name (the MLflow experiment and task).
    labels : Path
        ``labels.parquet`` of the cohort.
    embeddings : Path
        Embeddings folder (one representation per file).
    metrics : Path
        Metrics JSON to write.
    plots : Path
        Folder for plot data and figures.
    params : Path or None
        Parameters file (``predict`` and ``tracking`` sections; None: ``./params.yaml`` if present).
    progress : bool
        Show progress bars.
    truth : Path, optional
        Synthetic truth ``admissions.parquet`` (oracle AUROC).
    source_name : str, optional
        Data source tag for MLflow.
    features : Path, optional
        Features folder, logged as MLflow dataset inputs.

    Returns
    -------
    dict
        The stage summary of :func:`pipeline.predict.predict`.
    """
    from pipeline.predict import PredictConfig, PredictInputs, predict
    from pipeline.tracking import TrackingConfig

    config = load_section("predict", PredictConfig, params)
    tracking = load_section("tracking", TrackingConfig, params)
    inputs = PredictInputs(
        cohort=cohort,
        labels_path=labels,
        embeddings_dir=embeddings,
        metrics_path=metrics,
        plots_dir=plots,
        truth_path=truth,
        features_dir=features,
        params=read_params(params),  # nested; tracking flattens it to embed.hcl.lr-style keys
        tags={"data_source": source_name, **_provenance_tags(labels)},
        progress=progress,
    )
    return predict(inputs, config, tracking)


def fewshot_step(
    cohort: str, labels: Path, embeddings: Path, metrics: Path, plots: Path, params: Path | None, progress: bool,
    ks: list[str] | None = None,
) -> dict:
    """Run the k-shot label-efficiency protocol on every representation and log it to MLflow.

    Parameters
    ----------
    cohort, labels, embeddings, metrics, params, progress
        As for :func:`predict_step` (``params``: its ``fewshot`` and ``tracking`` sections).
    plots : Path
        Folder for ``auroc.csv`` and ``auroc.png``.
    ks : list of str, optional
        Override ``fewshot.ks`` (positive integers and ``all``).

    Returns
    -------
    dict
        The metrics written by :func:`pipeline.fewshot.fewshot`.
    """
    from pipeline.fewshot import FewshotConfig, FewshotInputs, fewshot
    from pipeline.tracking import TrackingConfig

    config = load_section("fewshot", FewshotConfig, params, {"ks": ks})
    tracking = load_section("tracking", TrackingConfig, params)
    inputs = FewshotInputs(
        cohort=cohort, labels_path=labels, embeddings_dir=embeddings, metrics_path=metrics, plots_dir=plots,
        params=read_params(params), tags=_provenance_tags(labels), progress=progress,
    )
    return fewshot(inputs, config, tracking)


def report_step(cohort: str, workspace: Path, output: Path | None, params: Path | None) -> Path:
    """Write one cohort's HTML report from the workspace's outputs.

    Parameters
    ----------
    cohort : str
        Cohort name.
    workspace : Path
        Workspace root holding data/, models/, metrics/ and plots/.
    output : Path or None
        HTML file to write (None: ``reports/<cohort>.html`` in the workspace).
    params : Path or None
        Parameters file whose ``report`` section is the config (None: ``./params.yaml`` if present).

    Returns
    -------
    Path
        The report written.
    """
    from pipeline.report import ReportConfig, build_report

    ws = Workspace(workspace)
    name = check_name(cohort)
    config = load_section("report", ReportConfig, params)
    path = build_report(
        name,
        ws.cohort(name),
        ws.features(name),
        ws.embeddings(name),
        ws.models(name),
        ws.metrics(name),
        ws.plots(name),
        output or ws.report(name),
        config,
        fewshot_metrics_path=ws.fewshot_metrics(name),
        fewshot_plots_dir=ws.fewshot_plots(name),
    )
    log.info("report: %s", path)
    return path


# --- CLI handlers: argparse namespace in, stage call out ---------------------------------------------


def cmd_synth(args) -> dict:
    """Handle `ehr-hcl synth`."""
    return synth_step(args.output, args.params, not args.quiet, patients=args.patients, seed=args.seed)


def cmd_ingest(args) -> dict:
    """Handle `ehr-hcl ingest`."""
    return ingest_step(args.source, args.input, args.output, args.params, not args.quiet, strict=args.strict)


def cmd_cohort(args) -> dict:
    """Handle `ehr-hcl cohort`."""
    return cohort_step(args.config, args.events, args.output)


def cmd_features(args) -> dict:
    """Handle `ehr-hcl features`."""
    return features_step(
        args.labels,
        args.events,
        args.output,
        args.params,
        not args.quiet,
        audit=not args.no_audit,
        fitted=args.fitted,
    )


def cmd_population(args) -> dict:
    """Handle `ehr-hcl population`."""
    return population_step(args.events, args.cohort_configs, args.output, args.params)


def cmd_pretrain(args) -> dict:
    """Handle `ehr-hcl pretrain`."""
    return pretrain_step(args.features, args.labels, args.models, args.params)


def cmd_audit(args) -> dict:
    """Handle `ehr-hcl audit`."""
    from pipeline.audit import audit

    result = audit(args.labels, args.features, args.events)
    log.info("audit: passed")
    return result


def cmd_embed(args) -> dict:
    """Handle `ehr-hcl embed`."""
    return embed_step(args.features, args.labels, args.output, args.models, args.params, args.pretrained)


def cmd_predict(args) -> dict:
    """Handle `ehr-hcl predict`."""
    return predict_step(
        args.cohort,
        args.labels,
        args.embeddings,
        args.metrics,
        args.plots,
        args.params,
        not args.quiet,
        truth=args.truth,
        source_name=args.source_name,
        features=args.features,
    )


def cmd_fewshot(args) -> dict:
    """Handle `ehr-hcl fewshot`: run the stage, print mean AUROC by representation and k."""
    from pipeline.fewshot.outputs import summary_table as fewshot_table

    a = args
    result = fewshot_step(a.cohort, a.labels, a.embeddings, a.metrics, a.plots, a.params, not a.quiet, a.ks)
    print(fewshot_table(result))
    return result


def cmd_report(args) -> Path:
    """Handle `ehr-hcl report`."""
    return report_step(args.cohort, args.workspace, args.output, args.params)


def cmd_compare(args) -> None:
    """Handle `ehr-hcl compare`."""
    from pipeline.compare import compare
    from pipeline.tracking import TrackingConfig

    if args.k is not None:
        from pipeline.compare import compare_fewshot

        print(compare_fewshot(args.task, args.k, Workspace(args.workspace)))
        return
    tracking = load_section("tracking", TrackingConfig, args.params)
    print(compare(args.task, tracking))


def cmd_summary(args) -> None:
    """Handle `ehr-hcl summary`."""
    print(summary_table(Workspace(args.workspace), params_path=args.params))


def cmd_ui(args) -> None:
    """Serve the MLflow UI on the project's store; exit with the server's code (143 after SIGTERM)."""
    from pipeline.tracking import TrackingConfig, ui

    tracking = load_section("tracking", TrackingConfig, args.params)
    code = ui(tracking, host=args.host, port=args.port)
    if code:
        raise SystemExit(code)


def cmd_run(args) -> None:
    """Run the whole pipeline in one process, under ``--workspace``."""
    ws = Workspace(args.workspace)
    cohort_files = [Path(p) for p in (args.cohorts or DEFAULT_COHORT_FILES)]
    for path in cohort_files:
        check_name(path.stem)
        if not path.exists():
            raise ConfigError(f"{path}: cohort file not found")
    started = time.perf_counter()
    params, progress = args.params, not args.quiet
    if args.source == "synthetic":
        if args.input is not None:
            raise ConfigError("--input is not used with --source synthetic (the data is generated)")
        synth_step(ws.raw, params, progress)
        source, raw = "mimic-iv", ws.raw
    else:
        if args.input is None:
            raise ConfigError(f"--input is required with --source {args.source}")
        source, raw = args.source, args.input
    ingest_step(source, raw, ws.events, params, progress)
    truth = ws.truth if args.source == "synthetic" else None
    source_name = args.source if args.source != "mimic-iv" else f"mimic-iv:{Path(args.input).name}"
    fewshot_results: dict[str, dict] = {}
    population_step(ws.events, cohort_files, ws.pretraining, params)
    features_step(ws.population, ws.events, ws.pretraining_features, params, progress)
    pretrain_step(ws.pretraining_features, ws.population, ws.pretrained_models, params)
    for path in cohort_files:
        name = path.stem
        cohort_step(path, ws.events, ws.cohort(name))
        features_step(ws.labels(name), ws.events, ws.features(name), params, progress, fitted=ws.pretraining_features)
        embed_step(
            ws.features(name), ws.labels(name), ws.embeddings(name), ws.models(name), params, ws.pretrained_models
        )
        predict_step(
            experiment_name(ws, name),
            ws.labels(name),
            ws.embeddings(name),
            ws.metrics(name),
            ws.plots(name),
            params,
            progress,
            truth=truth,
            source_name=source_name,
            features=ws.features(name),
        )
        fewshot_paths = (ws.labels(name), ws.embeddings(name), ws.fewshot_metrics(name), ws.fewshot_plots(name))
        fewshot_results[name] = fewshot_step(experiment_name(ws, name), *fewshot_paths, params, progress)
        report_step(name, ws.root, None, params)
    print(summary_table(ws, [p.stem for p in cohort_files], params_path=params))
    from pipeline.fewshot.outputs import summary_table as fewshot_table

    for result in fewshot_results.values():
        print("\n" + fewshot_table(result))
    log.info("run: finished in %.0f s", time.perf_counter() - started)


# --- helpers ------------------------------------------------------------------------------------------


def experiment_name(ws: Workspace, cohort: str) -> str:
    """MLflow experiment (= task) name: the cohort, prefixed by the workspace folder outside the project root."""
    root = ws.root.resolve()
    if root == Path.cwd().resolve():
        return cohort
    return f"{root.name}.{cohort}"


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
    """Return the MLflow tracking URI the pipeline logs to (absolute)."""
    from pipeline.tracking import TrackingConfig, resolve_tracking_uri

    return resolve_tracking_uri(load_section("tracking", TrackingConfig, params_path))
