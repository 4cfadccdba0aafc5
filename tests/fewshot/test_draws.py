"""The k-shot draws: exactly k per class from the split (or the cap), nested across k, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.fewshot.draws import ALL, nested_draws, replicate_draws, replicate_seed

KS = [1, 2, 4, 8, 16, 32, 64, ALL]


@pytest.fixture
def splits():
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.15).astype(int)
    split = rng.choice(np.array(["train", "tuning", "held_out"]), size=n, p=[0.6, 0.2, 0.2])
    rows = {s: np.where(split == s)[0] for s in ("train", "tuning", "held_out")}
    return y, rows


def test_each_draw_has_k_per_class_from_its_split_nested_and_disjoint(splits):
    y, rows = splits
    train, tune = replicate_draws(y, rows["train"], rows["tuning"], KS, seed=replicate_seed(0, 3))
    n_pos = int(y[rows["train"]].sum())
    n_pos_tune = int(y[rows["tuning"]].sum())
    assert 32 < n_pos < 64 and n_pos_tune < 16  # the cap is exercised at k = 64 (train) and k = 16 (tuning)
    assert len(rows["tuning"]) - n_pos_tune >= 64  # negatives never capped here
    previous = {"train": set(), "tuning": set()}
    for k in KS:
        for name, draws, split_rows, pos_total in (
            ("train", train, rows["train"], n_pos),
            ("tuning", tune, rows["tuning"], n_pos_tune),
        ):
            d = draws[str(k)]
            drawn = set(d.rows.tolist())
            assert len(drawn) == len(d.rows)  # no row twice
            assert drawn <= set(split_rows.tolist())  # only from its own split
            assert not drawn & set(rows["held_out"].tolist())
            if k == ALL:
                assert drawn == set(split_rows.tolist()) and not d.capped
            else:
                assert int(y[d.rows].sum()) == d.n_positive == min(k, pos_total)
                assert int((1 - y[d.rows]).sum()) == d.n_negative == k
                assert d.capped == (k > pos_total)
            assert previous[name] <= drawn  # nested: a smaller k's draw is inside this one
            previous[name] = drawn
    assert not set(train[ALL].rows.tolist()) & set(tune[ALL].rows.tolist())


def test_the_first_k_of_one_order_per_class(splits):
    y, rows = splits
    draws = nested_draws(y, rows["train"], [4, 8], np.random.default_rng(5))
    pos8 = draws["8"].rows[: draws["8"].n_positive]
    neg8 = draws["8"].rows[draws["8"].n_positive :]
    assert list(draws["4"].rows) == list(pos8[:4]) + list(neg8[:4])


def test_same_seed_same_draws_and_replicates_differ(splits):
    y, rows = splits
    a = replicate_draws(y, rows["train"], rows["tuning"], KS, replicate_seed(0, 1))
    b = replicate_draws(y, rows["train"], rows["tuning"], KS, replicate_seed(0, 1))
    c = replicate_draws(y, rows["train"], rows["tuning"], KS, replicate_seed(0, 2))
    d = replicate_draws(y, rows["train"], rows["tuning"], KS, replicate_seed(1, 1))
    assert all(np.array_equal(a[0][k].rows, b[0][k].rows) for k in a[0])
    assert all(np.array_equal(a[1][k].rows, b[1][k].rows) for k in a[1])
    assert not np.array_equal(a[0]["8"].rows, c[0]["8"].rows)
    assert not np.array_equal(a[0]["8"].rows, d[0]["8"].rows)
    # the draws do not depend on the order in which the split's rows are given
    e = replicate_draws(y, rows["train"][::-1], rows["tuning"][::-1], KS, replicate_seed(0, 1))
    assert np.array_equal(a[0]["8"].rows, e[0]["8"].rows)
