"""Features-stage throughput: rows/second per modality and notes/second for note embedding.

Generates a synthetic EHR (``pipeline.sources.synthetic``), ingests it to MEDS, builds the in-hospital
mortality and 30-day readmission cohorts, then times ``build_features`` (TF-IDF note encoder for the full
run) and the MiniLM encoder on a sample of distinct notes. Prints one table; writes nothing in the project.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/features.py --patients 23000   # >= 50,000 admissions
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--patients", type=int, default=23000, help="synthetic patients (~2.2 admissions each)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--minilm-notes", type=int, default=256, help="distinct notes embedded with MiniLM (0: skip)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep intermediate data here (default: temp)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from pipeline.cohort import build_cohort
    from pipeline.features import FeaturesConfig, build_features
    from pipeline.ingest import IngestConfig, ingest
    from pipeline.sources.synthetic import SynthConfig, synthesize

    root = Path(__file__).resolve().parents[1]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_features_"))
    try:
        if (work / "events" / "data").is_dir():  # --workdir from an earlier run: reuse its events
            print(f"reusing events in {work / 'events'}")
        else:
            t = time.perf_counter()
            synth = synthesize(
                SynthConfig(patients=args.patients, seed=args.seed), work / "raw", progress=False
            )
            t_synth = time.perf_counter() - t
            t = time.perf_counter()
            ingest("mimic-iv", work / "raw", work / "events", IngestConfig(), progress=False)
            t_ingest = time.perf_counter() - t
            print(
                f"synthetic: {args.patients} patients, {synth['admissions']} admissions, "
                f"{synth['rows']['hosp/labevents']} lab rows (synth {t_synth:.1f} s, ingest {t_ingest:.1f} s)"
            )
        print(
            f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"polars {pl.thread_pool_size()}, cpus {os.cpu_count()}"
        )
        print(
            f"{'cohort':<24}{'modality':<13}{'rows':>8}{'cols':>6}{'events':>11}{'seconds':>9}{'rows/s':>10}"
        )
        config = FeaturesConfig.model_validate(
            {"notes": {"encoder": "tfidf"}, "cache_dir": str(work / "cache")}
        )
        for cohort in ("in_hospital_mortality", "readmission_30d"):
            build_cohort(root / "cohorts" / f"{cohort}.yaml", work / "events", work / "cohorts" / cohort)
            t = time.perf_counter()
            summary = build_features(
                work / "cohorts" / cohort / "labels.parquet",
                work / "events",
                work / "features" / cohort,
                config,
                progress=False,
            )
            total = time.perf_counter() - t
            for m, s in summary["modalities"].items():
                rate = summary["rows"] / s["seconds"] if s["seconds"] else float("nan")
                print(
                    f"{cohort:<24}{m:<13}{summary['rows']:>8}{s['columns']:>6}{s['n_events']:>11}"
                    f"{s['seconds']:>9.2f}{rate:>10.0f}"
                )
            notes = summary["modalities"]["notes"]
            print(
                f"{cohort:<24}{'(all, total)':<13}{summary['rows']:>8}{'':>6}{'':>11}{total:>9.2f}"
                f"{summary['rows'] / total:>10.0f}   tfidf: {notes.get('n_notes')} distinct notes, "
                f"{notes.get('notes_per_second')} notes/s"
            )
        if args.minilm_notes:
            from pipeline.features.notes import embed_notes
            from pipeline.features.text_encoders import MiniLMEncoder

            texts = (
                pl.read_csv(work / "raw" / "note" / "radiology.csv.gz", columns=["text"])["text"]
                .head(args.minilm_notes // 2)
                .to_list()
                + pl.read_csv(work / "raw" / "note" / "discharge.csv.gz", columns=["text"])["text"]
                .head(args.minilm_notes - args.minilm_notes // 2)
                .to_list()
            )
            encoder = MiniLMEncoder(batch_size=32)
            encoder._get_model()  # load outside the timing
            _, stats = embed_notes(texts, encoder, None, batch_size=32, progress=False)
            print(
                f"minilm: {stats['n_embedded']} distinct notes ({encoder.n_chunks_} chunks) in "
                f"{stats['embed_seconds']:.1f} s = {stats['notes_per_second']} notes/s"
            )
        print(f"peak RSS {_peak_rss_mb():.0f} MB")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
