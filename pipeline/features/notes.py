"""Notes: every note available before the prediction time, embedded and mean-pooled per row.

Each distinct note text is embedded once (MiniLM, or TF-IDF + SVD fit on the notes visible to train rows);
a row's vector is the mean of the vectors of its notes. Embeddings are cached on disk keyed by
``sha256(text)`` under a folder named after the encoder, so a rerun embeds only new notes. Note text is
never logged, never put in an error message and never written anywhere but the encoder's input: the cache
holds hashes and vectors only.

MiniLM has two chunking modes (``features.notes.chunking``):

- ``"sentence"`` (default): a note is split into sentences (:func:`split_sentences`), each *distinct*
  sentence is embedded once (a sentence longer than the model's window is cut into token windows, as whole
  notes are in window mode) and the note vector is the mean of its sentence vectors **weighted by each
  sentence's word count** (an approximation of its token count that needs no tokenizer), L2-renormalised.
  Why: all-MiniLM-L6-v2 was trained on sentence-level pairs (128 tokens), so it is used at the length it
  was trained for; and clinical notes are heavily templated and copy-forwarded, so the same sentences recur
  across notes and each is embedded once (a content-addressed cache: ``sha256(sentence)`` in the encoder's
  folder, the same scheme and folder as whole-note vectors, since a sentence's vector is exactly
  ``encoder.encode(sentence)``). Note vectors are cached too (folder ``<encoder>-sentmean-v<splitter
  version>``), so a rerun embeds nothing and loads no model.
- ``"window"``: the whole note is cut into consecutive token windows of the model's maximum length, the
  window vectors are averaged (the original behaviour).
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
from pipeline.features.text_encoders import (
    SPLITTER_VERSION,
    MiniLMEncoder,
    TfidfSVDEncoder,
    split_sentences,
    text_hash,
    word_count,
)
from pipeline.io import write_parquet

logger = logging.getLogger(__name__)

CACHE_FLUSH_NOTES = 2048  # write a cache part at least this often, so an interrupted run keeps its work
NOTE_BLOCK = 4096  # sentence mode: notes split and looked up in the sentence cache at a time
# sentence mode: sentence vectors kept in memory (~0.4 GB at 384-d) before a reset
MAX_MEMORY_SENTENCES = 250_000


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
        # sentences are short (~15-30 tokens): bigger batches keep the number of forward passes (whose fixed
        # cost grows when the 2 cores are contended) near that of window mode, for the same number of tokens
        batch = config.sentence_batch_size if config.chunking == "sentence" else config.batch_size
        return MiniLMEncoder(batch_size=batch, max_chunks_per_note=config.max_chunks_per_note, model=model)
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


class _SentenceMeans:
    """Working state of one :func:`embed_notes_by_sentence` call, one method per step of a note block.

    Holds the sentence vectors in memory, the sentences already hashed, the counters of the stage summary
    and the vectors waiting to be written to the two disk caches (None: no cache).
    """

    def __init__(
        self,
        encoder: Any,
        note_cache: EmbeddingCache | None,
        sent_cache: EmbeddingCache | None,
        step: int,
        splitter: Callable[[str], list[str]],
    ):
        self.encoder = encoder
        self.note_cache = note_cache
        self.sent_cache = sent_cache
        self.step = step
        self.splitter = splitter
        self.memory: dict[str, np.ndarray] = {}  # sentence key -> vector
        self.known: dict[
            str, tuple[str, int]
        ] = {}  # sentence text -> (key, weight), this run only, never written
        self.n_occ = self.n_embedded = self.n_from_disk = 0
        self.pend_sent_keys: list[str] = []
        self.pend_sent_vecs: list[np.ndarray] = []
        self.pend_note_keys: list[str] = []
        self.pend_note_vecs: list[np.ndarray] = []

    def embed_block(
        self, block: list[int], texts: list[str], note_keys: list[str], out: np.ndarray, bar: Any
    ) -> None:
        """Compute the vectors of the notes ``block`` (indices into ``texts``) into ``out``; flush the caches."""
        if len(self.memory) > MAX_MEMORY_SENTENCES or len(self.known) > MAX_MEMORY_SENTENCES:
            self.memory.clear()  # bounded memory; the disk cache (if any) still holds every vector
            self.known.clear()
        keys_of, weights_of, text_of = self._split([texts[i] for i in block])
        if self.sent_cache is not None and text_of:
            found = self.sent_cache.lookup(list(text_of))
            self.memory.update(found)
            self.n_from_disk += len(found)
        missing = [k for k in text_of if k not in self.memory]
        order, last_sorted = _finishing_order(keys_of, missing)
        done = 0
        for e0 in range(
            -self.step, len(missing), self.step
        ):  # the first pass finishes notes needing nothing new
            if e0 >= 0:
                self._embed_sentences(missing[e0 : e0 + self.step], text_of)
            upto = max(e0 + self.step, 0)
            new = int(np.searchsorted(last_sorted, upto, side="left"))
            for j in order[done:new]:
                out[block[j]] = self._note_vector(keys_of[j], weights_of[j], note_keys[block[j]])
            bar.update(new - done)
            bar.set_postfix_str(
                f"sentences: {self.n_embedded} embedded, {self.n_from_disk} from cache, {self.n_occ} seen",
                refresh=False,
            )
            done = new
        if done != len(block):  # cannot happen: every sentence of the block is in memory by now
            raise RuntimeError(f"notes: {len(block) - done} notes of a block were left unfinished")
        self._flush_block()

    def _split(self, block_texts: list[str]) -> tuple[list[list[str]], list[np.ndarray], dict[str, str]]:
        """Split notes into sentence keys and word-count weights; return the block's new sentences too."""
        keys_of: list[list[str]] = []
        weights_of: list[np.ndarray] = []
        text_of: dict[str, str] = {}  # distinct sentences of the block not in memory, first-seen order
        known = self.known
        for text in block_texts:
            sentences = self.splitter(text) or [text]
            for x in sentences:
                if x not in known:  # templated text: most sentences are hashed and counted only once
                    known[x] = (text_hash(x), word_count(x))
            keys = [known[x][0] for x in sentences]
            keys_of.append(keys)
            weights_of.append(np.array([known[x][1] for x in sentences], dtype=np.float64))
            for k, x in zip(keys, sentences, strict=True):
                if k not in self.memory and k not in text_of:
                    text_of[k] = x
            self.n_occ += len(keys)
        return keys_of, weights_of, text_of

    def _embed_sentences(self, chunk: list[str], text_of: dict[str, str]) -> None:
        """Encode one batch of new sentences into memory; write a cache part when enough are pending."""
        vecs = np.asarray(self.encoder.encode([text_of[k] for k in chunk]), dtype=np.float32)
        self.memory.update(zip(chunk, vecs, strict=True))
        self.n_embedded += len(chunk)
        self.pend_sent_keys += chunk
        self.pend_sent_vecs.append(vecs)
        if self.sent_cache is not None and len(self.pend_sent_keys) >= CACHE_FLUSH_NOTES:
            self.sent_cache.add(self.pend_sent_keys, np.concatenate(self.pend_sent_vecs))
            self.pend_sent_keys, self.pend_sent_vecs = [], []

    def _note_vector(self, keys: list[str], weights: np.ndarray, note_key: str) -> np.ndarray:
        """Return the L2-normalised weighted mean of a note's sentence vectors (float64), queued for the cache."""
        mat = np.stack([self.memory[k] for k in keys]).astype(np.float64)
        vec = weights @ mat
        norm = float(np.linalg.norm(vec))
        if norm > 0:
            vec /= norm
        self.pend_note_keys.append(note_key)
        self.pend_note_vecs.append(vec.astype(np.float32))
        return vec

    def _flush_block(self) -> None:
        """Write the sentence and note vectors still pending to their caches."""
        if self.sent_cache is not None and self.pend_sent_keys:
            self.sent_cache.add(self.pend_sent_keys, np.concatenate(self.pend_sent_vecs))
            self.pend_sent_keys, self.pend_sent_vecs = [], []
        if self.note_cache is not None and self.pend_note_keys:
            self.note_cache.add(self.pend_note_keys, np.stack(self.pend_note_vecs))
        self.pend_note_keys, self.pend_note_vecs = [], []


def _finishing_order(keys_of: list[list[str]], missing: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Order a block's notes by the encoder batch that finishes them.

    A note is finished once the last of its new sentences is embedded (first-seen order), so the bar
    advances after every encoder call. Returns the notes' order and, in that order, the position of each
    note's last new sentence in ``missing`` (-1: nothing new).
    """
    pos = {k: j for j, k in enumerate(missing)}
    last = np.array([max((pos.get(k, -1) for k in keys), default=-1) for keys in keys_of])
    order = np.argsort(last, kind="stable")
    return order, last[order]


def embed_notes_by_sentence(
    texts: list[str],
    encoder: Any,
    cache_dir: str | Path | None,
    batch_size: int,
    progress: bool = True,
    splitter: Callable[[str], list[str]] = split_sentences,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Embed distinct note texts as the word-count-weighted mean of their distinct sentences' vectors.

    Parameters
    ----------
    texts : list of str
        Distinct, non-blank note texts.
    encoder : MiniLMEncoder (or any object with ``name``, ``dim`` and ``encode(texts)``)
        Applied to sentences; it windows a sentence longer than the model's maximum length.
    cache_dir : path or None
        None disables both caches (sentences are still embedded once per run).
    batch_size : int
        New sentences per encoder call.
    progress : bool
        Show a tqdm bar in notes/second, with the number of sentences embedded and reused.
    splitter : callable
        ``text -> list of sentences`` (default :func:`split_sentences`).

    Returns
    -------
    vectors : ndarray of shape (len(texts), encoder.dim), float32, rows L2-normalised
    stats : dict
        n_notes, n_cache_hits (notes), n_embedded (notes computed), n_sentences (sentence occurrences in
        the computed notes), n_sentences_embedded, n_sentences_from_cache (distinct sentences read from the
        disk cache), embed_seconds, notes_per_second.
    """
    from tqdm.auto import tqdm

    dim = encoder.dim
    note_keys = [text_hash(t) for t in texts]
    out = np.zeros((len(texts), dim), dtype=np.float32)
    use_cache = cache_dir is not None
    note_cache = (
        EmbeddingCache(cache_dir, f"{encoder.name}-sentmean-v{SPLITTER_VERSION}", dim) if use_cache else None
    )
    sent_cache = EmbeddingCache(cache_dir, encoder.name, dim) if use_cache else None
    hits = note_cache.lookup(note_keys) if note_cache is not None else {}
    todo = [i for i, k in enumerate(note_keys) if k not in hits]
    for i, k in enumerate(note_keys):
        if k in hits:
            out[i] = hits[k]
    state = _SentenceMeans(encoder, note_cache, sent_cache, max(1, int(batch_size)), splitter)
    start = _time.perf_counter()
    with tqdm(
        total=len(todo), unit="notes", desc="embedding notes (sentences)", disable=not progress or not todo
    ) as bar:
        for b in range(0, len(todo), NOTE_BLOCK):
            state.embed_block(todo[b : b + NOTE_BLOCK], texts, note_keys, out, bar)
    seconds = _time.perf_counter() - start
    stats = {
        "n_notes": len(texts),
        "n_cache_hits": len(texts) - len(todo),
        "n_embedded": len(todo),
        "n_sentences": state.n_occ,
        "n_sentences_embedded": state.n_embedded,
        "n_sentences_from_cache": state.n_from_disk,
        "embed_seconds": round(seconds, 3),
        "notes_per_second": round(len(todo) / seconds, 2) if todo and seconds > 0 else None,
    }
    logger.info(
        "notes: %d distinct notes, %d from cache, %d computed from %d sentence occurrences "
        "(%d sentences embedded with %s, %d from the sentence cache; %s notes/s)",
        stats["n_notes"],
        stats["n_cache_hits"],
        stats["n_embedded"],
        state.n_occ,
        state.n_embedded,
        encoder.name,
        state.n_from_disk,
        stats["notes_per_second"],
    )
    return out, stats


def _mean_per_row(
    pairs: pl.DataFrame, vectors: np.ndarray, n_texts: int, reachable: pl.Series, n_rows: int
) -> np.ndarray:
    """Average the vectors of each row's distinct notes (``vectors`` holds the reachable notes, in order)."""
    from scipy.sparse import csr_matrix

    local = np.full(n_texts, -1, dtype=np.int64)  # position of each reachable note in `vectors`
    local[reachable.to_numpy()] = np.arange(reachable.len())
    uniq = pairs.unique(["row_idx", "note_idx"])
    rows = uniq["row_idx"].to_numpy().astype(np.int64)
    cols = local[uniq["note_idx"].to_numpy()]
    per_row = np.bincount(rows, minlength=n_rows).astype(np.float64)
    pool = csr_matrix((1.0 / per_row[rows], (rows, cols)), shape=(n_rows, int(reachable.len())))
    return np.asarray(pool @ vectors.astype(np.float64), dtype=np.float32)


def build_notes(
    note_events: pl.DataFrame,
    window: Callable[[pl.DataFrame], pl.DataFrame],
    n_rows: int,
    train_rows: np.ndarray,
    config: Any,
    cache_dir: str | Path | None,
    progress: bool = True,
    model: Any = None,
    state: dict[str, Any] | None = None,
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
    state : dict, optional
        A fitted state (``.state`` of an earlier result) applied unchanged; None fits on ``train_rows``.

    Returns
    -------
    ModalityMatrix of shape (n_rows, encoder dim), columns ``note_emb__<k>``.
    """
    if state is not None and state.get("absent"):  # absent where fitted: absent everywhere, same columns
        return empty_modality("notes", n_rows, f"absent in the rows the features were fitted on ({state['reason']})")
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
        if state is None and train_notes.len() < 2:
            return empty_modality("notes", n_rows, "fewer than 2 notes visible to train rows: cannot fit TF-IDF")
        if state is not None:  # fitted elsewhere (the pretraining population): applied unchanged
            encoder.set_state(state["meta"], state["arrays"])
        else:
            encoder.prepare(texts_all.gather(train_notes).to_list())
        info["n_fit_notes"] = encoder.n_train_notes_
    texts = texts_all.gather(reachable).to_list()
    try:
        # MiniLM: several model batches per call (better length sorting); TF-IDF: big cheap batches
        step = 8 * encoder.batch_size if isinstance(encoder, MiniLMEncoder) else 4096
        if isinstance(encoder, MiniLMEncoder) and config.chunking == "sentence":
            vectors, stats = embed_notes_by_sentence(texts, encoder, cache_dir, step, progress)
        else:
            vectors, stats = embed_notes(texts, encoder, cache_dir, step, progress)
    except ValueError:
        if not isinstance(encoder, TfidfSVDEncoder):
            raise
        return empty_modality("notes", n_rows, "TF-IDF found no usable words in the train notes")
    run.update(stats)
    info["encoder_name"] = encoder.name
    info["dim"] = encoder.dim
    if isinstance(encoder, MiniLMEncoder):
        info["chunking"] = config.chunking
        # window mode: notes cut at max_chunks_per_note windows; sentence mode: sentences cut so
        key = "n_truncated_notes" if config.chunking == "window" else "n_truncated_sentences"
        run[key] = encoder.n_truncated_
        run["n_chunks"] = encoder.n_chunks_
    values = _mean_per_row(pairs, vectors, int(texts_all.len()), reachable, n_rows)
    n_events, max_time = row_provenance(
        pairs.select("row_idx", pl.lit(1, dtype=pl.Int64).alias("n"), pl.col("time").alias("max_time")),
        n_rows,
    )
    names = [f"note_emb__{k}" for k in range(encoder.dim)]
    matrix = ModalityMatrix(values, names, n_events, max_time, info, run)
    if isinstance(encoder, TfidfSVDEncoder):
        meta, arrays = encoder.get_state()
        matrix.state = {"encoder": "tfidf", "meta": meta, "arrays": arrays}
    else:
        matrix.state = {"encoder": "minilm", "encoder_name": encoder.name}
    return matrix
