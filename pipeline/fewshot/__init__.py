"""The ``fewshot`` stage: label efficiency of every representation (EHRSHOT's k-shot protocol).

The public entry points are :class:`FewshotConfig`, :class:`FewshotInputs` and :func:`fewshot`; the draws are
in :mod:`pipeline.fewshot.draws`, the models in :mod:`pipeline.fewshot.models`. Heavy libraries
(scikit-learn, mlflow, matplotlib) are imported only when a function needs them.
"""

from pipeline.fewshot.run import FewshotConfig, FewshotInputs, fewshot

__all__ = ["FewshotConfig", "FewshotInputs", "fewshot"]
