"""The one module that talks to MLflow.

Layout: one experiment per task (= cohort name); one parent run per pipeline execution; nested runs per
representation × model. The tracking store is SQLite at an **absolute** path (``<project root>/mlflow.db``
by default) with artifacts beside it (``<project root>/mlartifacts``), so runs started from a DVC
experiment copy land in the project's store.

Experiments are tagged ``mlflow.experimentKind = custom_model_development``, so the MLflow UI (3.x) opens
them in its model-training view (runs, metrics, models) rather than its GenAI traces page. Runs are opened
with :func:`tracked_run`, which ends them FINISHED, FAILED (any exception) or KILLED (Ctrl-C). The data a
run saw is logged as MLflow dataset inputs (:func:`log_dataset`: name, source path and a digest of the file).
Models are logged without pickle: linear models as JSON weights behind the pyfunc loader module
:mod:`pipeline.serving`, scikit-learn models in skops format made of scikit-learn types only. mlflow is
imported lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from pipeline.exceptions import ConfigError
from pipeline.io import write_json
from pipeline.workspace import git_toplevel

logger = logging.getLogger(__name__)

ROLE_TAG = "ehr_hcl.role"
# HistGradientBoosting stores its trees as TreePredictor, a scikit-learn type skops does not trust by default
# (a *tampered* file could hold out-of-range node indices). We trust exactly this one scikit-learn type for
# models this project logged into its own artifact store; nothing outside scikit-learn is ever trusted.
# MLPClassifier keeps its Adam optimiser state (for partial_fit) in the fitted model: a scikit-learn type too.
SKOPS_TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
]
#: experiment tag that makes the MLflow UI open an experiment in its model-training view
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
PIP_REQUIREMENTS = ["mlflow>=3.0,<4", "scikit-learn>=1.4", "numpy>=1.26", "pandas>=2.1,<3", "skops"]
MAX_PARAM_LEN = 6000


class TrackingConfig(BaseModel):
    """Where and how runs are recorded (``tracking`` section of ``params.yaml``).

    Attributes
    ----------
    tracking_uri : None → ``sqlite:///<project root>/mlflow.db``; a relative ``sqlite:///`` path is made
        absolute against the project root (git top of the working directory, else the working directory).
    artifact_root : folder for artifacts of new experiments; None → ``<project root>/mlartifacts``.
    register_champion : register the best model of each task with the alias ``champion``.
    """

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = None
    artifact_root: str | None = None
    register_champion: bool = True


def project_root(cwd: Path | None = None) -> Path:
    """Return the git top of ``cwd`` (default: the working directory), else ``cwd`` itself, absolute.

    ``dvc exp run --queue`` and ``--temp`` run each experiment in a temporary git copy under
    ``<project>/.dvc/tmp/exps/``; the project is the folder above that ``.dvc``, so their MLflow runs
    land in the project's store rather than in a copy that DVC deletes afterwards.
    """
    cwd = Path(cwd or Path.cwd()).resolve()
    top = git_toplevel(cwd) or cwd
    parts = top.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return top


def resolve_tracking_uri(cfg: TrackingConfig, root: Path | None = None) -> str:
    """Absolute tracking URI for ``cfg`` (see :class:`TrackingConfig`)."""
    uri = cfg.tracking_uri
    if uri is None:
        return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        if not path.is_absolute():
            path = (root or project_root()) / path
        return f"sqlite:///{path}"
    if "://" not in uri:
        raise ConfigError(
            f"params.yaml: tracking.tracking_uri = {uri!r}: not a URI; use sqlite:///<path>/mlflow.db or http://host:port"
        )
    return uri


def resolve_artifact_root(cfg: TrackingConfig, root: Path | None = None) -> str | None:
    """Absolute ``file://`` URI of the artifact root for new experiments (None: a remote server decides)."""
    if cfg.artifact_root and "://" in cfg.artifact_root:
        return cfg.artifact_root
    if not cfg.artifact_root and not resolve_tracking_uri(cfg, root).startswith("sqlite:///"):
        return None
    path = Path(cfg.artifact_root) if cfg.artifact_root else Path("mlartifacts")
    if not path.is_absolute():
        uri = resolve_tracking_uri(cfg, root)
        base = (
            Path(uri[len("sqlite:///") :]).parent
            if uri.startswith("sqlite:///")
            else (root or project_root())
        )
        path = base / path
    return path.resolve().as_uri()


def _mlflow(cfg: TrackingConfig):
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    import mlflow

    # mlflow sets its own loggers to INFO on import; keep them at the level the CLI chose (or quieter)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))

    uri = resolve_tracking_uri(cfg)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return mlflow


def ensure_experiment(cfg: TrackingConfig, name: str) -> str:
    """Id of experiment ``name``, created with an absolute artifact location if absent.

    The experiment carries ``mlflow.experimentKind = custom_model_development`` (set on an older experiment
    that lacks it), so the MLflow UI shows it as model training, not GenAI.
    """
    mlflow = _mlflow(cfg)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        return mlflow.create_experiment(
            name, artifact_location=resolve_artifact_root(cfg), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


@contextlib.contextmanager
def tracked_run(
    cfg: TrackingConfig,
    experiment: str,
    run_name: str,
    nested: bool = False,
    tags: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """Open a run and always close it: FINISHED, FAILED on an exception, KILLED on Ctrl-C.

    Yields the MLflow ``ActiveRun``.
    """
    mlflow = _mlflow(cfg)
    exp_id = ensure_experiment(cfg, experiment)
    run = mlflow.start_run(
        experiment_id=exp_id,
        run_name=run_name,
        nested=nested,
        tags={k: str(v) for k, v in (tags or {}).items()},
    )
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings: ``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def log_params(params: Mapping[str, Any]) -> None:
    """Log (flattened) params, values stringified and truncated to MLflow's limit."""
    import mlflow

    flat = {k: str(v)[:MAX_PARAM_LEN] for k, v in flatten(params).items()}
    items = sorted(flat.items())
    for i in range(0, len(items), 100):
        mlflow.log_params(dict(items[i : i + 100]))


def log_metrics(metrics: Mapping[str, Any]) -> None:
    """Log the finite numeric values of ``metrics`` (NaN/None are skipped: undefined on this data)."""
    import mlflow

    clean = {k: f for k, v in metrics.items() if (f := _finite(v)) is not None}
    if clean:
        mlflow.log_metrics(clean)


def _metric_entities(metrics: Mapping[str, Any], history: Mapping[str, Any]) -> list[Any]:
    """Build MLflow ``Metric`` entities: finite values of ``metrics`` at step 0, of ``history`` at their position."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = []
    series = [(k, [v]) for k, v in metrics.items()] + list(history.items())
    for name, values in series:
        items += [Metric(name, f, now, step) for step, v in enumerate(values) if (f := _finite(v)) is not None]
    return items


def _finite(value: Any) -> float | None:
    """Return ``value`` as a finite float, or None for None, bools, non-numbers, NaN and infinities."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def log_child_run(
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    history: Mapping[str, Any],
    tags: Mapping[str, Any],
) -> str:
    """Record a finished run nested under the active run in a few batch calls (no fluent start/end).

    Many small child runs (one per representation x model x k) cost a fraction of :func:`tracked_run`'s.
    ``params`` are flattened and stringified, ``metrics`` logged at step 0, each ``history`` sequence at
    steps 0, 1, ... (a missing or NaN value is skipped, the others keep their step), None tags dropped.
    Returns the run id.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient()
    parent = mlflow.active_run()
    tags = {"mlflow.parentRunId": parent.info.run_id, **{k: str(v) for k, v in tags.items() if v is not None}}
    run_id = client.create_run(parent.info.experiment_id, run_name=run_name, tags=tags).info.run_id
    try:
        flat = sorted((k, str(v)[:MAX_PARAM_LEN]) for k, v in flatten(params).items())
        items = _metric_entities(metrics, history)
        client.log_batch(run_id, metrics=items[:1000], params=[Param(k, v) for k, v in flat[:100]])
        for i in range(1000, len(items), 1000):
            client.log_batch(run_id, metrics=items[i : i + 1000])
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


def set_tags(tags: Mapping[str, Any]) -> None:
    """Set the non-None ``tags`` (values stringified) on the active run."""
    import mlflow

    mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})


def log_artifacts(paths: list[Path], artifact_path: str | None = None) -> None:
    """Log the existing files of ``paths`` into the active run, under ``artifact_path``."""
    import mlflow

    for p in paths:
        if Path(p).exists():
            mlflow.log_artifact(str(p), artifact_path=artifact_path)


def file_digest(path: str | Path) -> str:
    """Return the first 32 hex digits of the SHA-256 of a file's bytes (an MLflow dataset digest holds 36)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def log_dataset(path: str | Path, name: str, context: str, targets: str | None = None) -> tuple[Any, str]:
    """Log a parquet file the active run read as an MLflow dataset input.

    Parameters
    ----------
    path : str or Path
        The parquet file (its absolute path is the dataset's source).
    name : str
        The dataset's name in the UI (e.g. ``labels``, a representation's name).
    context : str
        How the run used it (``mlflow.data.context`` tag), e.g. ``labels`` or ``representation``.
    targets : str, optional
        The label column, if any.

    Returns
    -------
    (Dataset, str)
        The dataset and its context, to log again into nested runs with :func:`log_inputs`.
    """
    import mlflow
    import pandas as pd

    path = Path(path).resolve()
    df = pd.read_parquet(path)
    with warnings.catch_warnings():
        # mlflow hints that a local path "can be interpreted in multiple ways" (both are the local-file source)
        # and that integer columns cannot hold missing values (a model-signature hint): neither applies here
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            df, source=str(path), name=name, digest=file_digest(path), targets=targets
        )
        mlflow.log_input(dataset, context=context)  # the schema is inferred here
    return dataset, context


def log_inputs(datasets: list[tuple[Any, str]]) -> None:
    """Log datasets made by :func:`log_dataset` (with their contexts) into the active run."""
    import mlflow

    if datasets:
        mlflow.log_inputs(
            datasets=[d for d, _ in datasets],
            contexts=[c for _, c in datasets],
            tags_list=[None] * len(datasets),
        )


def log_linear_model(weights: dict[str, Any], input_example, name: str = "model") -> str:
    """Log a linear model as JSON weights behind the loader module :mod:`pipeline.serving`; returns its URI.

    ``input_example`` must be synthetic or summary rows (a DataFrame with the model's columns).
    """
    import mlflow
    from mlflow.models import infer_signature

    from pipeline.serving import LinearProbabilityModel

    output = LinearProbabilityModel(weights).predict(input_example)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.json"
        write_json(weights, path)
        info = mlflow.pyfunc.log_model(
            name=name,
            loader_module="pipeline.serving",
            data_path=str(path),
            signature=infer_signature(input_example, output),
            input_example=input_example,
            pip_requirements=PIP_REQUIREMENTS,
        )
    return info.model_uri


def log_sklearn_model(sk_model, input_example, name: str = "model") -> str:
    """Log a scikit-learn model (skops format, scikit-learn types only); pyfunc predicts probabilities."""
    import mlflow
    from mlflow.models import infer_signature

    output = sk_model.predict_proba(input_example)
    info = mlflow.sklearn.log_model(
        sk_model,
        name=name,
        serialization_format="skops",
        signature=infer_signature(input_example, output),
        input_example=input_example,
        pip_requirements=PIP_REQUIREMENTS,
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
    )
    return info.model_uri


def register_champion(cfg: TrackingConfig, model_uri: str, task: str) -> int:
    """Register ``model_uri`` under the name ``task`` and point the alias ``champion`` at it."""
    mlflow = _mlflow(cfg)
    from mlflow import MlflowClient

    # mlflow prints "Successfully registered model ..." to stderr itself; route it through our logging
    # so --quiet stays quiet
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        mv = mlflow.register_model(model_uri, task)
    for line in printed.getvalue().splitlines():
        if line.strip():
            logger.info("mlflow: %s", line.strip())
    MlflowClient().set_registered_model_alias(task, "champion", mv.version)
    return int(mv.version)


def load_champion(cfg: TrackingConfig, task: str):
    """Load the pyfunc model of ``models:/<task>@champion``."""
    mlflow = _mlflow(cfg)
    return mlflow.pyfunc.load_model(f"models:/{task}@champion")


def task_runs(cfg: TrackingConfig, task: str | None = None) -> list[dict[str, Any]]:
    """Child runs of the latest finished parent run of each task (or of ``task``).

    Returns
    -------
    list of dicts: task, representation, model, run_id, and every metric of the run.
    """
    _mlflow(cfg)
    from mlflow import MlflowClient

    client = MlflowClient()
    if task is not None:
        exp = client.get_experiment_by_name(task)
        if exp is None:
            known = [e.name for e in client.search_experiments() if e.name != "Default"]
            raise ConfigError(
                f"{resolve_tracking_uri(cfg)}: no experiment for task {task!r}; known tasks: {known}"
            )
        exps = [exp]
    else:
        exps = [e for e in client.search_experiments() if e.name != "Default"]
    rows: list[dict[str, Any]] = []
    for exp in exps:
        parents = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'parent' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not parents:
            continue
        parent = parents[0]
        children = client.search_runs(
            [exp.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
            max_results=5000,
        )
        for run in children:
            rows.append(
                {
                    "task": exp.name,
                    "representation": run.data.tags.get("representation", "?"),
                    "model": run.data.tags.get("model", "?"),
                    "run_id": run.info.run_id,
                    **run.data.metrics,
                }
            )
    return rows


def ui_command(cfg: TrackingConfig, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """Build the ``mlflow ui`` command line for the project's store."""
    exe = Path(sys.executable).parent / "mlflow"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]
    cmd = base + [
        "ui",
        "--backend-store-uri",
        resolve_tracking_uri(cfg),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    artifact_root = resolve_artifact_root(cfg)
    if artifact_root is not None:
        cmd += ["--default-artifact-root", artifact_root]
    return cmd


def ui(cfg: TrackingConfig, host: str = "127.0.0.1", port: int = 5000) -> int:
    """Run the MLflow UI on the project's store until interrupted or terminated; returns its exit code.

    The server runs in its own process group. Ctrl-C, SIGTERM or SIGHUP to this process stop the whole
    group (the server and its workers): SIGTERM first, SIGKILL after 10 s. No MLflow process outlives it.

    Parameters
    ----------
    cfg : TrackingConfig
        The store to show.
    host : str
        Bind address; anything but loopback is reachable from other machines (a warning says so).
    port : int
        Port.

    Returns
    -------
    int
        The server's exit code; 130 after Ctrl-C, 143 after SIGTERM.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("mlflow ui will listen on %s: reachable from other machines, no authentication", host)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    cmd = ui_command(cfg, host, port)
    logger.info("starting: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    received: list[int] = []

    def _on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        received.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return 128 + (received[0] if received else signal.SIGINT)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (it leads its own session), SIGKILL what is left after ``grace_s``."""
    import time

    pgid = proc.pid  # start_new_session: the server leads its own group
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()  # reap the leader, so a zombie does not keep the group alive
            if not _group_alive(pgid):
                return
            time.sleep(0.1)
    proc.poll()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def log_metrics_to(run_id: str, metrics: Mapping[str, Any]) -> None:
    """Add finite metrics to an already finished run (e.g. paired tests computed after all fits)."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    items = []
    for k, v in metrics.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            items.append(Metric(k, f, now, 0))
    if items:
        MlflowClient().log_batch(run_id, metrics=items)


def log_model_into_run(cfg: TrackingConfig, run_id: str, log_fn) -> str | None:
    """Reopen finished run ``run_id`` (nested) and call ``log_fn()`` in it; returns what it returns."""
    mlflow = _mlflow(cfg)
    with mlflow.start_run(run_id=run_id, nested=True):
        return log_fn()
