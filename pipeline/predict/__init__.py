"""The ``predict`` stage: downstream models, metrics with CIs, calibration, subgroups, survival, tracking.

The public entry points are :class:`PredictConfig` and :func:`predict`; heavy libraries (scikit-learn,
lifelines, mlflow, matplotlib) are imported only when a function needs them.
"""

from pipeline.predict.run import PredictConfig, predict, summarize_metrics

__all__ = ["PredictConfig", "predict", "summarize_metrics"]
