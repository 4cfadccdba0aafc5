"""Notes: every note available before the prediction time, embedded and mean-pooled per row.

Each distinct note text is embedded once (MiniLM, or TF-IDF + SVD fit on the notes visible to train rows);
a row's vector is the mean of the vectors of its notes. Embeddings are cached on disk keyed by
``sha256(text)`` under a folder named after the encoder, so a rerun embeds only new notes. Note text is
never logged, never put in an error message and never written anywhere but the encoder's input: the cache
holds hashes and vectors only.
"""

from __future__ import annotations

import logging
import re
import time as _time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipeline.features.codes import ModalityMatrix, empty_modality, row_provenance
from pipeline.features.text_encoders import MiniLMEncoder, TfidfSVDEncoder, text_hash
from pipeline.io import write_parquet

logger = logging.getLogger(__name__)

CACHE_FLUSH_NOTES = 2048  # write a cache part at least this often, so an interrupted run keeps its work


class EmbeddingCache:
    """Note vectors on disk: ``<cache_dir>/<encoder name>/part-*.parquet`` with columns key, embedding.

    Parts are written atomically and never rewritten; reading takes the union (first vector per key).
    """

    def __init__(self, cache_dir: str | Path, encoder_name: str, dim: int):
        self.folder = Path(cache_dir) / re.sub(r"[^A-Za-z0-9_.-]", "_", encoder_name)
        self.dim = dim

    def lookup(self, keys: list[str]) -> dict[str, np.ndarray]:
        """Vectors already cached for ``keys`` (missing keys are simply absent)."""
        parts = sorted(self.folder.glob("part-*.parquet")) if self.folder.is_dir() else []
        if not parts or not keys:
            return {}
        wanted = pl.Series("key", keys, dtype=pl.String).implode()
        found = (
            pl.scan_parquet(parts)
            .filter(pl.col("key").is_in(wanted))
            .unique("key", keep="first", maintain_order=True)
            .collect()
        )
        if found.height == 0:
            return {}
        matrix = np.asarray(found["embedding"].to_numpy(), dtype=np.float32).reshape(found.height, -1)
        if matrix.shape[1] != self.dim:
            logger.warning(
                "notes cache %s has %d-d vectors, expected %d; ignoring it",
                self.folder,
                matrix.shape[1],
                self.dim,
            )
            return {}
        return dict(zip(found["key"].to_list(), matrix, strict=True))

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        """Write one new part holding ``keys`` and their vectors (shape (len(keys), dim))."""
        if not keys:
            return
        frame = pl.DataFrame(
            {"key": keys, "embedding": vectors.astype(np.float32)},
            schema={"key": pl.String, "embedding": pl.Array(pl.Float32, self.dim)},
        )
        write_parquet(frame, self.folder / f"part-{uuid.uuid4().hex}.parquet")


def _make_encoder(config: Any, model: Any = None) -> MiniLMEncoder | TfidfSVDEncoder:
    if config.encoder == "minilm":
        return MiniLMEncoder(
            batch_size=config.batch_size, max_chunks_per_note=config.max_chunks_per_note, model=model
        )
    return TfidfSVDEncoder(
        dims=config.tfidf_dims,
        max_features=config.tfidf_max_features,
        max_fit_notes=config.tfidf_fit_max_notes,
        random_state=config.random_state,
    )


def embed_notes(
    texts: list[str], encoder: Any, cache_dir: str | Path | None, batch_size: int, progress: bool = True
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embed distinct note texts through the cache.

    Parameters
    ----------
    texts : list of str
        Distinct note texts.
    encoder : MiniLMEncoder or fitted TfidfSVDEncoder
    cache_dir : path or None
        None disables the cache.
    batch_size : int
        Notes per encoder call (the progress bar advances by this many).
    progress : bool
        Show a tqdm bar with notes/second.

    Returns
    -------
    vectors : ndarray of shape (len(texts), encoder.dim), float32
    stats : dict with n_notes, n_cache_hits, n_embedded, seconds, notes_per_second
    """
    from tqdm.auto import tqdm

    keys = [text_hash(t) for t in texts]
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    cache = EmbeddingCache(cache_dir, encoder.name, encoder.dim) if cache_dir is not None else None
    hits = cache.lookup(keys) if cache is not None else {}
    todo: list[int] = []
    for i, key in enumerate(keys):
        vec = hits.get(key)
        if vec is None:
            todo.append(i)
        else:
            out[i] = vec
    # longest first inside the run keeps batches of similar length (less padding) and shows the worst rate early
    todo.sort(key=lambda i: -len(texts[i]))
    start = _time.perf_counter()
    pending_keys: list[str] = []
    pending_vecs: list[np.ndarray] = []
    step = max(1, int(batch_size))
    with tqdm(total=len(todo), unit="notes", desc="embedding notes", disable=not progress or not todo) as bar:
        for b in range(0, len(todo), step):
            idx = todo[b : b + step]
            vecs = encoder.encode([texts[i] for i in idx])
            out[idx] = vecs
            pending_keys += [keys[i] for i in idx]
            pending_vecs.append(vecs)
            bar.update(len(idx))
            if cache is not None and len(pending_keys) >= CACHE_FLUSH_NOTES:
                cache.add(pending_keys, np.concatenate(pending_vecs))
                pending_keys, pending_vecs = [], []
    if cache is not None and pending_keys:
        cache.add(pending_keys, np.concatenate(pending_vecs))
    seconds = _time.perf_counter() - start
    stats = {
        "n_notes": len(texts),
        "n_cache_hits": len(texts) - len(todo),
        "n_embedded": len(todo),
        "embed_seconds": round(seconds, 3),
        "notes_per_second": round(len(todo) / seconds, 2) if todo and seconds > 0 else None,
    }
    logger.info(
        "notes: %d distinct notes, %d from cache, %d embedded with %s (%s notes/s)",
        stats["n_notes"],
        stats["n_cache_hits"],
        stats["n_embedded"],
        encoder.name,
        stats["notes_per_second"],
    )
    return out, stats


def build_notes(
    note_events: pl.DataFrame,
    window: Callable[[pl.DataFrame], pl.DataFrame],
    n_rows: int,
    train_rows: np.ndarray,
    config: Any,
    cache_dir: str | Path | None,
    progress: bool = True,
    model: Any = None,
) -> ModalityMatrix:
    """Note features.

    Parameters
    ----------
    note_events : polars.DataFrame with columns subject_id, time, text_value
        All NOTE events (not yet windowed).
    window : callable
        Takes a frame with subject_id, time (+ payload) and returns it joined to the label rows that may see
        each event (adds row_idx), applying the time rule.
    n_rows : int
    train_rows : ndarray of shape (n_rows,), bool
    config : NotesConfig
    cache_dir : path or None
    progress : bool
    model : optional already loaded sentence-transformers model (tests)

    Returns
    -------
    ModalityMatrix of shape (n_rows, encoder dim), columns ``note_emb__<k>``.
    """
    blank = pl.col("text_value").is_null() | (pl.col("text_value").str.strip_chars() == "")
    n_blank = int(note_events.select(blank.sum()).item()) if note_events.height else 0
    if n_blank:
        logger.warning(
            "notes: %d NOTE events with empty text were not used (counted in the stage summary)", n_blank
        )
    notes = note_events.filter(~blank)
    if notes.height == 0:
        return empty_modality("notes", n_rows, "no NOTE events with text in the events")
    distinct = notes.select("text_value").unique(maintain_order=True).with_row_index("note_idx")
    notes = notes.join(distinct, on="text_value", how="inner").select("subject_id", "time", "note_idx")
    pairs = window(notes).select("row_idx", "time", "note_idx")
    if pairs.height == 0:
        return empty_modality("notes", n_rows, "no note is available before any prediction time")
    reachable = pairs["note_idx"].unique().sort()
    texts_all = distinct["text_value"]
    encoder = _make_encoder(config, model)
    train_idx = pl.Series(np.flatnonzero(train_rows).astype(np.uint32))
    train_notes = pairs.filter(pl.col("row_idx").is_in(train_idx.implode()))["note_idx"].unique().sort()
    info: dict[str, Any] = {"encoder": config.encoder, "n_train_notes": int(train_notes.len())}
    run: dict[str, Any] = {"n_blank_notes_excluded": n_blank}
    if isinstance(encoder, TfidfSVDEncoder):
        if train_notes.len() < 2:
            return empty_modality(
                "notes", n_rows, "fewer than 2 notes visible to train rows: cannot fit TF-IDF"
            )
        encoder.prepare(texts_all.gather(train_notes).to_list())
        info["n_fit_notes"] = encoder.n_train_notes_
    texts = texts_all.gather(reachable).to_list()
    try:
        # MiniLM: several model batches per call (better length sorting); TF-IDF: big cheap batches
        step = 8 * config.batch_size if isinstance(encoder, MiniLMEncoder) else 4096
        vectors, stats = embed_notes(texts, encoder, cache_dir, step, progress)
    except ValueError:
        if not isinstance(encoder, TfidfSVDEncoder):
            raise
        return empty_modality("notes", n_rows, "TF-IDF found no usable words in the train notes")
    run.update(stats)
    info["encoder_name"] = encoder.name
    info["dim"] = encoder.dim
    if isinstance(encoder, MiniLMEncoder):
        run["n_truncated_notes"] = encoder.n_truncated_
        run["n_chunks"] = encoder.n_chunks_
    # position of each reachable note in `vectors`
    local = np.full(int(texts_all.len()), -1, dtype=np.int64)
    local[reachable.to_numpy()] = np.arange(reachable.len())
    uniq = pairs.unique(["row_idx", "note_idx"])
    rows = uniq["row_idx"].to_numpy().astype(np.int64)
    cols = local[uniq["note_idx"].to_numpy()]
    from scipy.sparse import csr_matrix

    per_row = np.bincount(rows, minlength=n_rows).astype(np.float64)
    weights = 1.0 / per_row[rows]
    pool = csr_matrix((weights, (rows, cols)), shape=(n_rows, len(texts)))
    values = np.asarray(pool @ vectors.astype(np.float64), dtype=np.float32)
    n_events, max_time = row_provenance(
        pairs.select("row_idx", pl.lit(1, dtype=pl.Int64).alias("n"), pl.col("time").alias("max_time")),
        n_rows,
    )
    names = [f"note_emb__{k}" for k in range(encoder.dim)]
    return ModalityMatrix(values, names, n_events, max_time, info, run)
