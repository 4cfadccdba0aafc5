"""Modality features: codes, labs, medications and note embeddings as row-aligned matrices with a mask.

``build_features(labels_path, events_dir, output_dir, config)`` is the stage; :class:`FeaturesConfig` is the
``features`` section of params.yaml.
"""

from pipeline.features.build import (
    CodesConfig,
    FeaturesConfig,
    LabsConfig,
    MedicationsConfig,
    NotesConfig,
    build_features,
)

__all__ = [
    "CodesConfig",
    "FeaturesConfig",
    "LabsConfig",
    "MedicationsConfig",
    "NotesConfig",
    "build_features",
]
