"""The ``predict`` stage: downstream models, metrics with CIs, calibration, subgroups, survival, tracking.

The public entry points are :class:`PredictConfig`, :class:`PredictInputs` and :func:`predict`; heavy
libraries (scikit-learn, lifelines, mlflow, matplotlib) are imported only when a function needs them.
The metrics JSON it writes is read and summarised by :mod:`pipeline.results`.
"""

from pipeline.predict.run import PredictConfig, PredictInputs, predict

__all__ = ["PredictConfig", "PredictInputs", "predict"]
