"""Synthetic EHR in the MIMIC-IV layout, generated from a known hierarchical latent model.

Per patient, latent factors ``z_S`` (standard normal, uncorrelated) for each *structure* ``S`` (a subset of
the modalities codes, labs, medications, notes): one global structure, three partially shared ones
(``codes+labs``, ``labs+medications``, ``codes+notes``) and one private structure per modality. Each
admission draws its own factors ``u = sqrt(1 - a^2) z + a e`` (admission noise ``a``), and every observation
of a modality during that admission is driven by the factors of the structures that contain it:

- labs: ``value = baseline + sd * (L u_labs + noise)``, ~30 itemids, one panel every 12 h during the first
  48 h and daily afterwards; ``storetime`` 0.5-3 h after ``charttime``; some ``valuenum`` null with a text
  ``value`` (as in MIMIC);
- codes: ICD-9/ICD-10 diagnoses and procedures sampled without replacement with log-odds ``b + B u_codes``;
- medications: drug names sampled the same way from ``u_medications``, mostly started in the first 48 h;
- notes: radiology reports (stored in the first 48 h) and a discharge summary, made of sentences whose
  polarity per note-driving factor dimension follows ``sigmoid(2 u_k)``, mixed with clinical filler.

In-hospital mortality and 30-day readmission are Bernoulli with logistic probabilities in a known sparse
subset of structures (:data:`OUTCOME_STRUCTURES`). Deaths happen after 48 h; a readmission within 30 days
happens exactly when the admission's readmission draw is positive (otherwise the next admission, if any,
comes more than 30 days later); some patients die after discharge (``patients.dod``).

The truth goes to ``truth/``: ``structure.json``, ``latent.parquet`` (patient factors),
``admission_latent.parquet`` (admission factors) and ``admissions.parquet`` (true probabilities and
outcomes). Files are byte-identical for the same configuration (gzip ``mtime=0``; one RNG stream per chunk).

The package: :mod:`.vocabulary` (plain data), :mod:`.model` (structures, loadings, configuration),
:mod:`.tables` (one generator per table) and :mod:`.generate` (:func:`synthesize`, the writers and the truth).
"""

from pipeline.sources.synthetic.generate import synthesize
from pipeline.sources.synthetic.model import (
    OUTCOME_STRUCTURES,
    OUTCOME_TRUTH,
    STRUCTURE_RANKS,
    TABLE_MODALITY,
    SynthConfig,
)
from pipeline.sources.synthetic.vocabulary import LAB_ITEMS

__all__ = [
    "LAB_ITEMS",
    "OUTCOME_STRUCTURES",
    "OUTCOME_TRUTH",
    "STRUCTURE_RANKS",
    "TABLE_MODALITY",
    "SynthConfig",
    "synthesize",
]
