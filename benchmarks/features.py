"""Features-stage throughput: rows/second per modality and notes/second for note embedding.

Generates a synthetic EHR (``pipeline.sources.synthetic``), ingests it to MEDS, builds the in-hospital
mortality and 30-day readmission cohorts, then times ``build_features`` (TF-IDF note encoder for the full
run) and the MiniLM encoder in both chunking modes. Prints tables; writes nothing in the project.

MiniLM notes/s is measured in both modes (``features.notes.chunking``: "sentence", "window") on

(a) the synthetic notes of ``--note-patients`` patients (the demo's size by default; every distinct note in
    sentence mode, a sample of ``--window-sample`` notes in window mode, which is too slow for all of them),
(b) ``--random-notes`` non-templated notes: sentences of random words from the model's own vocabulary, no
    sentence repeated anywhere, so sentence dedupe cannot help. This is the honest figure for real,
    less repetitive text (real discharge summaries are also much longer than these).

Each mode starts from an empty cache (a fresh temporary folder), the model is loaded outside the timing,
and the 1-minute load average is printed before and after (the machine may be shared).

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/features.py --patients 23000   # >= 50,000 admissions
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/features.py --notes-only      # MiniLM notes/s only
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


def _load() -> str:
    """The 1-, 5- and 15-minute load averages (the machine may be shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _feature_table(args: argparse.Namespace, root: Path, work: Path) -> None:
    """Rows/second per modality for both cohorts (TF-IDF note encoder)."""
    from pipeline.cohort import build_cohort
    from pipeline.features import FeaturesConfig, build_features
    from pipeline.ingest import IngestConfig, ingest
    from pipeline.sources.synthetic import SynthConfig, synthesize

    if (work / "events" / "data").is_dir():  # --workdir from an earlier run: reuse its events
        print(f"reusing events in {work / 'events'}")
    else:
        t = time.perf_counter()
        synth = synthesize(SynthConfig(patients=args.patients, seed=args.seed), work / "raw", progress=False)
        t_synth = time.perf_counter() - t
        t = time.perf_counter()
        ingest("mimic-iv", work / "raw", work / "events", IngestConfig(), progress=False)
        t_ingest = time.perf_counter() - t
        print(
            f"synthetic: {args.patients} patients, {synth['admissions']} admissions, "
            f"{synth['rows']['hosp/labevents']} lab rows (synth {t_synth:.1f} s, ingest {t_ingest:.1f} s)"
        )
    print(f"{'cohort':<24}{'modality':<13}{'rows':>8}{'cols':>6}{'events':>11}{'seconds':>9}{'rows/s':>10}")
    config = FeaturesConfig.model_validate({"notes": {"encoder": "tfidf"}, "cache_dir": str(work / "cache")})
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


def _random_notes(n_notes: int, vocabulary: list[str], seed: int) -> list[str]:
    """Non-templated notes: 8-16 sentences of 6-18 random words each, no sentence used twice."""
    import numpy as np

    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    notes = []
    for _ in range(n_notes):
        sentences = []
        for _ in range(int(rng.integers(8, 17))):
            while True:
                words = [vocabulary[k] for k in rng.integers(0, len(vocabulary), int(rng.integers(6, 19)))]
                sentence = " ".join(words).capitalize() + "."
                if sentence not in seen:
                    seen.add(sentence)
                    break
            sentences.append(sentence)
        notes.append(" ".join(sentences))
    return notes


def _time_mode(texts: list[str], mode: str, model) -> dict:
    """Embed ``texts`` from an empty cache in one chunking mode, as the stage does with default params."""
    from pipeline.features import FeaturesConfig
    from pipeline.features.notes import _make_encoder, embed_notes, embed_notes_by_sentence

    config = FeaturesConfig.model_validate({"notes": {"chunking": mode}}).notes
    encoder = _make_encoder(config, model)
    cache = Path(tempfile.mkdtemp(prefix="bench_notes_cache_"))
    try:
        embed = embed_notes_by_sentence if mode == "sentence" else embed_notes
        _, stats = embed(texts, encoder, cache, 8 * encoder.batch_size, progress=False)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    stats["n_chunks"] = encoder.n_chunks_
    stats["load"] = _load()
    return stats


def _bench_minilm(args: argparse.Namespace, work: Path) -> None:
    """MiniLM notes/s in both chunking modes on synthetic and on non-templated notes."""
    import torch

    from pipeline.features.text_encoders import load_minilm
    from pipeline.sources.synthetic import SynthConfig, synthesize

    model = load_minilm("cpu")  # outside the timing
    print(f"minilm: torch threads {torch.get_num_threads()}, max_seq_length {model.max_seq_length}")
    sets: list[tuple[str, list[str], dict[str, int]]] = []
    if args.note_patients:
        raw = work / "notes_raw"
        synthesize(SynthConfig(patients=args.note_patients, seed=args.seed), raw, progress=False)
        texts = (
            pl.concat([pl.read_csv(f, columns=["text"]) for f in sorted((raw / "note").glob("*.csv.gz"))])
            .unique(maintain_order=True)["text"]
            .to_list()
        )
        sets.append(
            (
                f"synthetic ({args.note_patients} patients)",
                texts,
                {"window": min(args.window_sample, len(texts)), "sentence": len(texts)},
            )
        )
    if args.random_notes:
        vocabulary = sorted(
            w for w in model.tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) >= 3
        )
        texts = _random_notes(args.random_notes, vocabulary, args.seed)
        sets.append(("non-templated random", texts, {"window": len(texts), "sentence": len(texts)}))
    print(
        f"{'notes':<30}{'mode':<10}{'notes':>7}{'words/note':>11}{'model inputs':>13}{'sent. occ.':>11}"
        f"{'seconds':>9}{'notes/s':>9}  load avg after"
    )
    for label, texts, sizes in sets:
        for mode in ("window", "sentence"):
            n = sizes[mode]
            subset = (
                texts if n == len(texts) else [texts[k] for k in range(0, len(texts), len(texts) // n)][:n]
            )
            words = sum(len(t.split()) for t in subset) / max(1, len(subset))
            st = _time_mode(subset, mode, model)
            occ = st.get("n_sentences", "")
            print(
                f"{label:<30}{mode:<10}{st['n_embedded']:>7}{words:>11.0f}{st['n_chunks']:>13}{occ!s:>11}"
                f"{st['embed_seconds']:>9.1f}{st['notes_per_second']!s:>9}  {st['load']}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--patients", type=int, default=23000, help="synthetic patients (~2.2 admissions each)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--notes-only", action="store_true", help="only the MiniLM notes/s benchmark")
    parser.add_argument(
        "--note-patients", type=int, default=3000, help="synthetic patients for the MiniLM notes (0: skip)"
    )
    parser.add_argument(
        "--window-sample", type=int, default=300, help="synthetic notes embedded in window mode"
    )
    parser.add_argument("--random-notes", type=int, default=500, help="non-templated random notes (0: skip)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep intermediate data here (default: temp)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    root = Path(__file__).resolve().parents[1]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_features_"))
    try:
        print(
            f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
            f"polars {pl.thread_pool_size()}, cpus {os.cpu_count()}, load average {_load()}"
        )
        if not args.notes_only:
            _feature_table(args, root, work)
        if args.note_patients or args.random_notes:
            _bench_minilm(args, work)
        print(f"peak RSS {_peak_rss_mb():.0f} MB")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
