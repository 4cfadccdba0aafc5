"""Label efficiency on the library's own simulator (issue 14, point 7; targets (d), (e), (f)).

The paper's downstream experiment: each representation is fitted on n unlabelled rows of
``hcl.simulate.hierarchical`` (no labels read), then an L2 logistic regression is fitted on m labelled rows
(the first m of one random permutation of those n rows, so draws are nested across m), and scored by AUROC
on a large independent test set drawn from the same truth (same loadings, noise, outcome coefficients).

Representations
    raw        standardised concatenation of the modalities (scaler fitted on the n rows; a missing
               modality is imputed by its mean, i.e. 0 after standardising)
    pca@lin    PCA of the standardised concatenation, as wide as LinearHCL's embedding
    pca@deep   PCA of the same, as wide as deep HCL's embedding
    linear     hcl.linear.LinearHCL(ranks="auto") blocks
    deep       hcl.HCL blocks with params.yaml's embed.hcl settings (embedding_dim 8, hidden [],
               decorrelation 3.0) and --epochs epochs; structures pruned by --prune: the library's
               default permutation null (z >= --prune-z), or the fixed weakest-pair alignment 0.3 that
               params.yaml set before (--prune threshold)
    oracle     the achievable reference: E[z | x] = (I + W' Psi^-1 W)^-1 W' Psi^-1 x with the TRUE loadings
               W and noise Psi (a row's missing modalities are dropped from the sum)

Downstream model: sklearn LogisticRegression (L2) on the representation scaled by a StandardScaler fitted
on the n unlabelled rows; C is chosen from {1e-3, ..., 1e2} by stratified K-fold CV log-loss on the m
labelled rows themselves (K = min(5, rows of the rarer class)), then refitted on all m. Target (e) adds
hcl.selection.GroupLassoClassifier (library defaults, groups = the HCL blocks, its own CV on the m rows)
against the logistic model on the same blocks.

Targets (issue 14), measured as means over seeds:
    (d) at m <= 200, linear and deep each capture >= 90% of the achievable gain over raw,
        share = (AUROC_rep - AUROC_raw) / (AUROC_oracle - AUROC_raw) computed on the seed means, and each
        is at least as good as PCA of its own width (pca@lin, pca@deep);
    (e) at every m, group lasso on HCL blocks >= logistic on the same blocks (mean AUROC difference
        >= -TIE, TIE = 0.005, for linear and deep blocks);
    (f) deep HCL structure discovery: on each design and on >= 95% of seeds (19 of 20 with --full) it keeps
        every present structure above the detection limit, never prunes a present global structure, and
        prunes every absent one. Detection rule (LinearHCL's): a present structure S is *above the limit*
        when every singular value s of its noise-whitened stacked true loading (rows of S's modalities)
        satisfies s^2 >= PRUNE_SNR * sqrt(d_S / n), PRUNE_SNR = 2 (hcl.linear.em), d_S = features of S.

Usage::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/label_efficiency_sim.py            # --quick
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/label_efficiency_sim.py --full
    ... --designs M3-plain M4-private --seeds 5 --f-seeds 20     # any subset
    ... --full --cache /tmp/les --seeds 1 --f-seeds 1; ... --seeds 2 --f-seeds 2; ...   # in pieces

Cost on one core (2-core machine shared with other jobs): deep HCL (60 epochs) takes 5-50 s a fit, LinearHCL
0.1-5 s; one seed of one design with all 7 m values 15-80 s (M4-wide the most). ``--quick`` takes about
4 minutes; ``--full`` about 80 minutes single-threaded (5 seeds x 8 designs downstream, 15 more seeds x 8
designs of deep HCL fits for (f)), so run it in pieces with ``--cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcl.structures import kind as structure_kind  # noqa: E402
from hcl.structures import parse_structure  # noqa: E402

MS_FULL = (20, 50, 100, 200, 500, 1000, 2000)
MS_QUICK = (20, 50, 200, 1000)
CS = 10.0 ** np.arange(-3, 3)
TIE = 0.005
SHARE_TARGET = 0.90
M_SMALL = 200


@dataclass(frozen=True)
class Design:
    """One simulator design: what ``hcl.simulate.hierarchical`` is called with."""

    name: str
    dims: dict
    ranks: dict
    outcome: tuple
    noise: float = 1.0
    loading_scale: tuple = (0.5, 1.5)
    missing: dict = field(default_factory=dict)
    note: str = ""


DESIGNS = {
    d.name: d
    for d in [
        Design(
            "M2-global",
            {"a": 100, "b": 200},
            {"a+b": 2, "a": 2, "b": 2},
            ("a+b",),
            note="M=2, outcome from the global structure",
        ),
        Design(
            "M3-plain",
            {"a": 100, "b": 100, "c": 100},
            {s: 2 for s in ["a+b+c", "a+b", "a+c", "b+c", "a", "b", "c"]},
            ("a+b",),
            note="the issue's plain linear design: every structure present, noise 1; outcome partial a+b",
        ),
        Design(
            "M4-private",
            {"a": 100, "b": 150, "c": 200, "d": 250},
            {"a+b+c+d": 2, "a+b": 2, "c+d": 2, "a": 2, "b": 2, "c": 2, "d": 2},
            ("c",),
            note="M=4, two pairs present, outcome private c",
        ),
        Design(
            "M3-near",
            {"a": 300, "b": 300, "c": 300},
            {"a+b+c": 2, "a+b": 2, "a": 2, "b": 2, "c": 2},
            ("a+b+c", "a+b"),
            loading_scale=(0.5, 1.0),
            note="loading scale near the detection limit; outcome global + partial",
        ),
        Design(
            "M3-wide",
            {"a": 100, "b": 500, "c": 1000},
            {s: 3 for s in ["a+b+c", "a+b", "a+c", "b+c", "a", "b", "c"]},
            ("a+b+c", "b+c"),
            note="dims 100/500/1000, rank 3 everywhere; outcome global + partial b+c",
        ),
        Design(
            "M2-near-private",
            {"a": 1000, "b": 1000},
            {"a+b": 2, "a": 2, "b": 2},
            ("a",),
            loading_scale=(0.6, 1.2),
            note="d=1000 near the limit; outcome private a",
        ),
        Design(
            "M3-missing",
            {"a": 200, "b": 200, "c": 200},
            {s: 2 for s in ["a+b+c", "a+b", "a+c", "b+c", "a", "b", "c"]},
            ("a+b+c",),
            missing={"a": 0.3},
            note="30% of rows miss modality a; outcome global",
        ),
        Design(
            "M4-wide",
            {"a": 250, "b": 500, "c": 750, "d": 1000},
            {"a+b+c+d": 2, "a+b": 2, "b+c+d": 2, "a": 2, "b": 2, "c": 2, "d": 2},
            ("b+c+d",),
            note="M=4, dims 250-1000, a present triple; outcome partial b+c+d",
        ),
    ]
}
QUICK = ("M2-global", "M3-plain", "M4-private")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- data
def simulate(design: Design, n: int, n_test: int, seed: int, strength: float):
    """Unlabelled/labelled pool (the simulator's n rows) and a test set from the same truth."""
    from hcl.simulate import hierarchical

    sim = hierarchical(
        n,
        design.dims,
        design.ranks,
        noise=design.noise,
        random_state=seed,
        missing=design.missing or None,
        loading_scale=design.loading_scale,
        outcome={"structures": list(design.outcome), "kind": "logistic", "strength": strength},
    )
    rng = np.random.default_rng([seed, 7919])
    z = {s: rng.standard_normal((n_test, r)) for s, r in sim.structure.items()}
    Xt = {}
    for m in sim.modalities:
        sig = np.zeros((n_test, design.dims[m]))
        for s in sim.structure:
            if (m, s) in sim.loadings:
                sig += z[s] @ sim.loadings[(m, s)].T
        Xt[m] = sig + np.sqrt(sim.noise) * rng.standard_normal(sig.shape)
    eta = sum(z[s] @ sim.outcome_coef[s] for s in sim.outcome_structures)
    yt = (rng.uniform(size=n_test) < 1 / (1 + np.exp(-eta))).astype(int)
    _blank(rng, Xt, sim.modalities, design.missing)
    return sim, Xt, yt, eta


def _blank(rng, X, mods, missing):
    """Remove each modality from its ``missing`` fraction of test rows, keeping one modality per row."""
    n = len(next(iter(X.values())))
    obs = {m: np.ones(n, bool) for m in mods}
    for m, frac in (missing or {}).items():
        eligible = np.where(obs[m] & (sum(obs[o].astype(int) for o in mods) >= 2))[0]
        rows = rng.choice(eligible, size=int(round(frac * n)), replace=False)
        obs[m][rows] = False
        X[m][rows] = np.nan


def oracle(sim, X):
    """Posterior mean of every true factor given x (true W, noise; missing modalities dropped)."""
    W, _ = sim.loading_matrix()
    mods = sim.modalities
    dims = {m: X[m].shape[1] for m in mods}
    offs = np.cumsum([0] + [dims[m] for m in mods])
    obs = np.column_stack([~np.isnan(X[m][:, 0]) for m in mods])
    Z = np.zeros((obs.shape[0], W.shape[1]))
    pats, inv = np.unique(obs, axis=0, return_inverse=True)
    for pi, pat in enumerate(pats):
        rows = np.where(np.asarray(inv).ravel() == pi)[0]
        idx = np.concatenate([np.arange(offs[i], offs[i + 1]) for i, o in enumerate(pat) if o])
        Wo = W[idx] / sim.noise
        Mk = np.eye(W.shape[1]) + W[idx].T @ Wo
        Xo = np.hstack([X[m][rows] for m, o in zip(mods, pat, strict=True) if o])
        Z[rows] = np.linalg.solve(Mk, (Xo @ Wo).T).T
    return Z


def detectable(sim, n):
    """Present structures whose every component is above the detection rule (see the module doc)."""
    from hcl.linear.em import PRUNE_SNR

    out = {}
    for s in sim.structure:
        A = np.vstack([sim.loadings[(m, s)] for m in parse_structure(s, sim.modalities)])
        sv2 = np.linalg.svd(A / np.sqrt(sim.noise), compute_uv=False) ** 2
        out[s] = bool(sv2.min() >= PRUNE_SNR * math.sqrt(A.shape[0] / n))
    return out


def _truth(design, seed):
    """A 10-row draw of ``design`` at ``seed``: the simulator draws every loading first, so the truth is the
    same as at any n."""
    from hcl.simulate import hierarchical

    return hierarchical(
        10, design.dims, design.ranks, noise=design.noise, random_state=seed, loading_scale=design.loading_scale
    )


def member_above(design, seed, n):
    """Stricter rule, per structure: in EVERY member modality m, each component of the true block A_{m,S}
    has s^2 / noise >= PRUNE_SNR * sqrt(d_m / n) (each modality alone carries the structure above its limit).
    """
    from hcl.linear.em import PRUNE_SNR

    sim = _truth(design, seed)
    out = {}
    for s in sim.structure:
        ok = True
        for m in parse_structure(s, sim.modalities):
            A = sim.loadings[(m, s)]
            sv2 = np.linalg.svd(A / np.sqrt(sim.noise), compute_uv=False) ** 2
            ok &= bool(sv2.min() >= PRUNE_SNR * math.sqrt(A.shape[0] / n))
        out[s] = ok
    return out


def outcome_above(design, seed, n):
    """Whether every structure driving the outcome is above the detection limit at ``n`` rows for ``seed``.

    The simulator draws all loadings before anything else, so a 10-row draw with the same seed has the
    same truth.
    """
    sim = _truth(design, seed)
    det = detectable(sim, n)
    return all(det["+".join(parse_structure(s, sim.modalities))] for s in design.outcome)


# -------------------------------------------------------------------------------- representations
def _concat(X, mods):
    """Columns of the named blocks side by side; one zero column when there are none (nothing detected)."""
    if not mods:
        return np.zeros((len(next(iter(X.values()))) if X else 0, 1))
    return np.hstack([X[m] for m in mods])


def fit_representations(sim, Xt, epochs, seed, want_downstream=True, embedding_dim=8, prune=None):
    """Fit every representation on the simulator's rows; return {name: (train, test)}, blocks, deep model."""
    from sklearn.decomposition import PCA

    from hcl.deep import HCL
    from hcl.linear import LinearHCL

    mods = sim.modalities
    X = sim.X
    reps, blocks, info = {}, {}, {}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deep = HCL(
            embedding_dim=embedding_dim,
            hidden=[],
            decorrelation=3.0,
            prune_threshold=0.3,
            **(prune or {}),
            max_epochs=epochs,
            random_state=seed,
            verbose=False,
            n_threads=1,
        ).fit(X)
    info["deep_s"] = time.perf_counter() - t0
    if not want_downstream:
        return reps, blocks, deep, info
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lin = LinearHCL(ranks="auto", n_threads=1).fit(X)
    info["linear_s"] = time.perf_counter() - t0
    info["linear_structure"] = dict(lin.structure_)
    for name, model in (("linear", lin), ("deep", deep)):
        btr, bte = model.transform(X), model.transform(Xt)
        if btr:
            blocks[name] = (btr, bte)
            reps[name] = (_concat(btr, list(btr)), _concat(bte, list(btr)))
        else:  # nothing kept: the downstream model sees a constant (AUROC 0.5)
            reps[name] = (np.zeros((len(sim.y), 1)), np.zeros((len(Xt[mods[0]]), 1)))
    raw_tr, raw_te = _concat(X, mods), _concat(Xt, mods)
    mu, sd = np.nanmean(raw_tr, axis=0), np.nanstd(raw_tr, axis=0) + 1e-12
    raw_tr = np.nan_to_num((raw_tr - mu) / sd)
    raw_te = np.nan_to_num((raw_te - mu) / sd)
    reps["raw"] = (raw_tr, raw_te)
    widths = {
        t: sum(b.shape[1] for b in blocks[r][0].values()) if r in blocks else 1
        for t, r in (("lin", "linear"), ("deep", "deep"))
    }
    k = max(1, min(max(widths.values()), min(raw_tr.shape) - 1))
    pca = PCA(n_components=k, svd_solver="randomized", random_state=seed).fit(raw_tr)
    ptr, pte = pca.transform(raw_tr), pca.transform(raw_te)
    for tag, w in widths.items():
        w = max(1, min(w, k))
        reps[f"pca@{tag}"] = (ptr[:, :w], pte[:, :w])
    reps["oracle"] = (oracle(sim, X), oracle(sim, Xt))
    info["widths"] = widths
    return reps, blocks, deep, info


# ----------------------------------------------------------------------------------------- downstream
def _cv_folds(y):
    return int(min(5, np.bincount(y, minlength=2).min()))


def logistic_auroc(Ftr, ytr, Fte, yte, seed):
    """L2 logistic with C by stratified CV log-loss on the labelled rows; AUROC on the test set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    k = _cv_folds(ytr)
    base = LogisticRegression(max_iter=2000)
    if k >= 2:
        search = GridSearchCV(
            base,
            {"C": list(CS)},
            scoring="neg_log_loss",
            cv=StratifiedKFold(k, shuffle=True, random_state=seed),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search.fit(Ftr, ytr)
        model = search.best_estimator_
    else:
        model = base.set_params(C=1.0).fit(Ftr, ytr)
    return float(roc_auc_score(yte, model.decision_function(Fte)))


def group_lasso_auroc(btr, ytr, bte, yte, seed):
    from sklearn.metrics import roc_auc_score

    from hcl.selection import GroupLassoClassifier

    k = _cv_folds(ytr)
    gl = GroupLassoClassifier(random_state=seed, cv=max(2, k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gl.fit(btr, ytr)
    return float(roc_auc_score(yte, gl.decision_function(bte))), len(gl.selected_)


def downstream(sim, yt, reps, blocks, ms, seed):
    """AUROC per (representation, m), plus group lasso on the HCL blocks; returns a list of records."""
    from sklearn.preprocessing import StandardScaler

    y = sim.y
    perm = np.random.default_rng([seed, 104729]).permutation(len(y))
    # first rows of one permutation: nested draws; move ahead until both classes appear twice by m=min(ms)
    rec = []
    scaled = {}
    for name, (Ftr, Fte) in reps.items():
        sc = StandardScaler().fit(Ftr)
        scaled[name] = (sc.transform(Ftr), sc.transform(Fte))
    for m in ms:
        lab = perm[:m]
        ylab = y[lab]
        if np.bincount(ylab, minlength=2).min() < 2:
            log(f"  m={m}: fewer than 2 rows of a class; skipped")
            continue
        for name, (Ftr, Fte) in scaled.items():
            rec.append(dict(rep=name, m=m, auroc=logistic_auroc(Ftr[lab], ylab, Fte, yt, seed)))
        for name in ("linear", "deep"):
            if name not in blocks:  # the representation kept no block
                rec.append(dict(rep=f"gl:{name}", m=m, auroc=0.5, kept=0))
                continue
            btr, bte = blocks[name]
            sub = {s: b[lab] for s, b in btr.items()}
            auc, kept = group_lasso_auroc(sub, ylab, bte, yt, seed)
            rec.append(dict(rep=f"gl:{name}", m=m, auroc=auc, kept=kept))
    return rec


# ------------------------------------------------------------------------------------------ discovery
def confusion(sim, deep, n):
    """Per candidate structure of deep HCL: present?, kept?, kind, above the detection limit?, alignment."""
    det = detectable(sim, n)
    summ = deep.summary
    align = dict(zip(summ["structure"], summ["weakest_pair_alignment"], strict=True))
    zs = dict(zip(summ["structure"], summ.get("weakest_pair_z", [float("nan")] * len(summ)), strict=True))
    rows = []
    for s in list(deep.candidates_) + [
        s for s in getattr(deep, "dropped_structures_", []) if s not in deep.candidates_
    ]:
        rows.append(
            dict(
                structure=s,
                present=s in sim.structure,
                kept=s in deep.structure_,
                kind=structure_kind(s, sim.modalities),
                above=det.get(s, False),
                align=float(align.get(s, float("nan"))),
                z=float(zs.get(s, float("nan"))),
            )
        )
    ok = all(r["kept"] for r in rows if r["present"] and (r["above"] or r["kind"] == "global"))
    ok &= not any(r["kept"] for r in rows if not r["present"])
    return rows, ok


# ----------------------------------------------------------------------------------------------- main
def _pruning_constants():
    """The permutation rule's fixed settings (in the cache key, so a change to them reruns deep HCL)."""
    from hcl.deep import pruning

    return [pruning.N_PERMUTATIONS, pruning.MIN_RELATIVE_ALIGNMENT]


def _cache_path(args, design, seed, full, ms):
    """File of one (design, seed) result under ``--cache``, named by every setting that changes it."""
    if not args.cache:
        return None
    key = json.dumps(
        [
            design.name,
            seed,
            full,
            list(ms) if full else [],
            args.n,
            args.n_test if full else 0,
            args.epochs,
            args.embedding_dim,
            args.strength,
            args.prune,
            args.prune_z,
            _pruning_constants() if args.prune == "permutation" else None,
        ],
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(args.cache) / f"{design.name}-seed{seed}-{digest}.json"


def run_seed(design, args, ms, seed, full):
    """Fit and score one seed of one design; returns (downstream records, confusion rows, discovery ok)."""
    t0 = time.perf_counter()
    sim, Xt, yt, eta = simulate(design, args.n, args.n_test if full else 10, seed, args.strength)
    reps, blocks, deep, info = fit_representations(
        sim,
        Xt,
        args.epochs,
        seed,
        want_downstream=full,
        embedding_dim=args.embedding_dim,
        prune=dict(prune=args.prune, prune_z=args.prune_z),
    )
    recs = []
    if full:
        from sklearn.metrics import roc_auc_score

        bayes = float(roc_auc_score(yt, eta))
        recs = [dict(r, seed=seed) for r in downstream(sim, yt, reps, blocks, ms, seed)]
        recs += [dict(rep="bayes", m=m, auroc=bayes, seed=seed) for m in ms]
    rows, ok = confusion(sim, deep, args.n)
    extra = f", linear {info['linear_s']:.1f}s {info['linear_structure']}" if full else ""
    log(
        f"{design.name} seed {seed}: deep {info['deep_s']:.1f}s {deep.n_epochs_} epochs, "
        f"kept {list(deep.structure_)}{extra}; discovery {'ok' if ok else 'WRONG'}; "
        f"total {time.perf_counter() - t0:.1f}s"
    )
    return recs, [dict(r, seed=seed) for r in rows], bool(ok)


def run_design(design, args, ms):
    """Every seed of one design (from ``--cache`` where a seed was already run with the same settings)."""
    import pandas as pd

    recs, conf, seed_ok = [], [], []
    for seed in range(max(args.seeds, args.f_seeds)):
        full = seed < args.seeds
        path = _cache_path(args, design, seed, full, ms)
        if path is not None and path.exists():
            r, c, ok = json.loads(path.read_text())
            log(f"{design.name} seed {seed}: from {path}")
        else:
            r, c, ok = run_seed(design, args, ms, seed, full)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps([r, c, ok]))
                tmp.replace(path)
        recs += r
        conf += c
        seed_ok.append(ok)
    return pd.DataFrame(recs), pd.DataFrame(conf), seed_ok


def report_auroc(name, df, ms):
    """Print AUROC mean (min-max) per m and representation, and each one's share of the oracle's gain."""
    reps = ["raw", "pca@lin", "linear", "pca@deep", "deep", "oracle", "gl:linear", "gl:deep", "bayes"]
    g = df.groupby(["m", "rep"])["auroc"]
    mean, lo, hi = g.mean(), g.min(), g.max()
    print(f"\n-- {name}: AUROC mean (min-max) over {df.seed.nunique()} seeds")
    print("m".rjust(5) + "".join(r.rjust(20) for r in reps))
    for m in ms:
        if (m, "raw") not in mean:
            continue
        cells = [f"{mean[m, r]:.3f} ({lo[m, r]:.3f}-{hi[m, r]:.3f})".rjust(20) for r in reps]
        print(f"{m:5d}" + "".join(cells))
    print("   (bayes: AUROC of the true linear predictor on the test set, the ceiling)")
    print(f"-- {name}: share of the achievable gain over raw, (rep - raw) / (oracle - raw), on seed means")
    shares = ["pca@lin", "linear", "pca@deep", "deep"]
    print("m".rjust(5) + "oracle-raw".rjust(12) + "".join(r.rjust(10) for r in shares))
    out = {}
    for m in ms:
        if (m, "raw") not in mean:
            continue
        gap = mean[m, "oracle"] - mean[m, "raw"]
        sh = {r: (mean[m, r] - mean[m, "raw"]) / gap if gap > TIE else float("nan") for r in shares}
        out[m] = dict(gap=gap, **sh, **{f"auc_{r}": mean[m, r] for r in reps})
        print(f"{m:5d}{gap:12.3f}" + "".join(f"{sh[r]:10.2f}" for r in shares))
    return out


def report_confusion(name, conf, seed_ok, design=None, n_rows=None):
    """Print the confusion table of deep HCL's kept structures against the truth; return (seeds right, seeds)."""
    n = len(seed_ok)
    strict_ok = None
    if design is not None:
        conf = conf.copy()
        strict = {sd: member_above(design, sd, n_rows) for sd in sorted(conf.seed.unique())}
        conf["member_above"] = [
            strict[sd].get(st, False) for sd, st in zip(conf.seed, conf.structure, strict=True)
        ]
        need = conf.present & (conf.member_above | (conf.kind == "global"))
        bad = (need & ~conf.kept) | (~conf.present & conf.kept)
        strict_ok = int(sum(not bad[conf.seed == sd].any() for sd in strict))
    print(f"\n-- {name}: deep HCL structure discovery over {n} seeds (structure-fits counted)")
    print("rows".ljust(34) + "pres&kept pres&pruned abs&kept abs&pruned")
    groups = [
        ("all candidates", conf),
        ("shared (|S| >= 2)", conf[conf.kind != "private"]),
        ("global", conf[conf.kind == "global"]),
        ("present, above detection limit", conf[conf.above]),
        ("present, below detection limit", conf[conf.present & ~conf.above]),
    ]
    if strict_ok is not None:
        groups.append(("present, every member above", conf[conf.member_above]))
    for label, c in groups:
        pk = int((c.present & c.kept).sum())
        pp = int((c.present & ~c.kept).sum())
        ak = int((~c.present & c.kept).sum())
        ap = int((~c.present & ~c.kept).sum())
        print(label.ljust(34) + f"{pk:9d} {pp:11d} {ak:8d} {ap:10d}")
    wrong = conf[
        (conf.present & ~conf.kept & (conf.above | (conf.kind == "global"))) | (~conf.present & conf.kept)
    ]
    if len(wrong):
        tally = wrong.groupby(["structure", "present"]).seed.count()
        print(
            "   errors: "
            + ", ".join(
                f"{s} ({'present, pruned' if p else 'absent, kept'}) x{c}" for (s, p), c in tally.items()
            )
        )
    shared = conf[conf.kind != "private"]
    if "align" in shared and shared["align"].notna().any():
        pa = shared[shared.present & shared.above]["align"].dropna()
        ab = shared[~shared.present]["align"].dropna()

        def rng(v):
            return f"{v.min():.2f} / {v.median():.2f} / {v.max():.2f} ({len(v)})" if len(v) else "none"

        print(
            "   weakest-pair alignment of shared structures, min / median / max (count) "
            f"[fixed rule: 0.3]: present above the limit {rng(pa)}; absent {rng(ab)}"
        )
    if "z" in shared and shared["z"].notna().any():
        pz = shared[shared.present & shared.above]["z"].dropna()
        az = shared[~shared.present]["z"].dropna()
        print(
            "   weakest-pair z against the permutation null (blocks residualised on kept larger structures), "
            f"min / median / max (count) [prune_z]: present above the limit {rng(pz)}; absent {rng(az)}"
        )
    print(f"   seeds with the whole discovery right: {sum(seed_ok)}/{n}")
    if strict_ok is not None:
        print(
            f"   the same with the stricter every-member rule (global structures still required): {strict_ok}/{n}"
        )
    return sum(seed_ok), n


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help=f"default: designs {', '.join(QUICK)}, 3 seeds, m in {MS_QUICK}"
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="all designs, 5 seeds for (d)/(e), 20 for (f), m in " + str(MS_FULL),
    )
    ap.add_argument("--designs", nargs="+", choices=list(DESIGNS), help="override the designs")
    ap.add_argument("--seeds", type=int, help="seeds for the downstream targets (d), (e)")
    ap.add_argument(
        "--f-seeds",
        type=int,
        help="seeds for the discovery target (f) (>= --seeds; extra ones fit deep HCL only)",
    )
    ap.add_argument(
        "--cache",
        help="folder for per-(design, seed) results; a seed already there with the same settings is loaded, "
        "so a long run can be done in pieces (e.g. --seeds 1, then --seeds 2, ...)",
    )
    ap.add_argument("--ms", type=int, nargs="+", help="labelled sample sizes m")
    ap.add_argument("--n", type=int, default=5000, help="unlabelled rows the representations are fitted on")
    ap.add_argument("--n-test", type=int, default=20000, help="test rows for AUROC")
    ap.add_argument(
        "--epochs", type=int, default=60, help="deep HCL max_epochs (early stopping still applies)"
    )
    ap.add_argument(
        "--embedding-dim", type=int, default=8, help="deep HCL embedding_dim (params.yaml: 8); for diagnosis"
    )
    ap.add_argument(
        "--strength", type=float, default=2.5, help="outcome strength (sd of the linear predictor)"
    )
    ap.add_argument(
        "--prune",
        choices=["permutation", "threshold"],
        default="permutation",
        help="deep HCL's pruning rule: the library default (permutation null) or the fixed weakest-pair "
        "alignment 0.3 of the earlier params.yaml",
    )
    ap.add_argument("--prune-z", type=float, default=4.0, help="deep HCL prune_z (permutation rule)")
    args = ap.parse_args()
    designs = args.designs or (list(DESIGNS) if args.full else list(QUICK))
    args.seeds = args.seeds if args.seeds is not None else (5 if args.full else 3)
    args.f_seeds = args.f_seeds if args.f_seeds is not None else (20 if args.full else args.seeds)
    ms = tuple(args.ms or (MS_FULL if args.full else MS_QUICK))
    print("# " + " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]))
    print(
        f"# n={args.n} unlabelled, test {args.n_test}, m={list(ms)}, seeds {args.seeds} (d,e) / "
        f"{max(args.seeds, args.f_seeds)} (f), deep HCL max_epochs {args.epochs} "
        f"embedding_dim {args.embedding_dim}, outcome strength {args.strength}, prune {args.prune}"
        + (f" (z >= {args.prune_z})" if args.prune == "permutation" else " (alignment >= 0.3)")
    )
    shares, ddiffs, fres, above = {}, [], {}, {}
    t_all = time.perf_counter()
    for dn in designs:
        d = DESIGNS[dn]
        print(
            f"\n== {dn}: dims {d.dims}, ranks {d.ranks}, noise {d.noise}, loading_scale {d.loading_scale}, "
            f"missing {d.missing or None}, outcome {list(d.outcome)} -- {d.note}"
        )
        df, conf, seed_ok = run_design(d, args, ms)
        if len(df):
            shares[dn] = report_auroc(dn, df, ms)
            k = sum(outcome_above(d, s, args.n) for s in range(args.seeds))
            above[dn] = k == args.seeds
            print(f"   outcome structures above the detection limit on {k}/{args.seeds} seeds")
            mean = df.groupby(["m", "rep"]).auroc.mean()
            for m in ms:
                for b in ("linear", "deep"):
                    if (m, b) in mean:
                        ddiffs.append((dn, m, b, mean[m, f"gl:{b}"] - mean[m, b]))
        fres[dn] = report_confusion(dn, conf, seed_ok, d, args.n)
        sys.stdout.flush()
    print(f"\n== verdicts ({time.perf_counter() - t_all:.0f} s)")
    verdict_d(shares)
    kept = {dn: v for dn, v in shares.items() if above.get(dn)}
    print(
        f"(d) again, on the designs whose outcome structures are above the detection limit on every seed: {list(kept)}"
    )
    verdict_d(kept)
    verdict_e(ddiffs)
    verdict_f(fres)


def verdict_d(shares):
    worst, fails = None, []
    for dn, per_m in shares.items():
        for m, r in per_m.items():
            if m > M_SMALL:
                continue
            for b in ("linear", "deep"):
                sh = r[b]
                pca = r[f"auc_pca@{'lin' if b == 'linear' else 'deep'}"]
                if np.isnan(sh):
                    continue
                if worst is None or sh < worst[0]:
                    worst = (sh, dn, m, b)
                if sh < SHARE_TARGET or r[f"auc_{b}"] < pca:
                    fails.append(f"{dn} m={m} {b} share {sh:.2f}, {r[f'auc_{b}'] - pca:+.3f} vs PCA")
    ok = worst is not None and not fails
    fig = f"worst share {worst[0]:.2f} ({worst[1]}, m={worst[2]}, {worst[3]})" if worst else "no figure"
    print(
        f"(d) {'PASS' if ok else 'FAIL'}: {fig}; {len(fails)} (design, m<={M_SMALL}, rep) cells miss "
        f"share >= {SHARE_TARGET:.2f} or PCA of equal width"
    )
    for f in fails[:8]:
        print(f"    {f}")


def verdict_e(ddiffs):
    if not ddiffs:
        print("(e) FAIL: no figure")
        return
    worst = min(ddiffs, key=lambda t: t[3])
    bad = [t for t in ddiffs if t[3] < -TIE]
    print(
        f"(e) {'PASS' if not bad else 'FAIL'}: worst mean AUROC(group lasso) - AUROC(logistic) on the same "
        f"blocks {worst[3]:+.3f} ({worst[0]}, m={worst[1]}, {worst[2]} blocks); {len(bad)}/{len(ddiffs)} "
        f"cells below -{TIE}"
    )
    for dn, m, b, v in bad[:12]:
        print(f"    {dn} m={m} {b}: {v:+.3f}")


def verdict_f(fres):
    need = {dn: math.ceil(0.95 * n) for dn, (_k, n) in fres.items()}
    bad = [dn for dn, (k, n) in fres.items() if k < need[dn]]
    figs = ", ".join(f"{dn} {k}/{n}" for dn, (k, n) in fres.items())
    print(
        f"(f) {'PASS' if not bad else 'FAIL'}: seeds with the discovery right per design (need >= 95%): {figs}"
    )


if __name__ == "__main__":
    main()
