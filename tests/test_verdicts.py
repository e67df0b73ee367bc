"""The claims' three verdicts (ptnl.report.claims, ptnl.report.stats): an interval over seeds from
an exact seed bootstrap, supported / refuted / inconclusive against the threshold, fewer than three
seeds and means that one cell carries, point verdicts where no seeds stand behind a value, and the
comparison of two executions' verdicts."""

import math

import numpy as np
import pandas as pd
import pytest

from ptnl.report import claims, stats, tables
from ptnl.report.tables import acc
from ptnl.sections import lab


def _runs(accs: dict) -> pd.DataFrame:
    """store.collect-shaped rows from {(dataset, method, noise_rate): [acc in % per seed]}; seed i
    is the i-th value (1, 2, ...)."""
    rows = []
    for (dataset, method, rate), per_seed in accs.items():
        for seed, a in enumerate(per_seed, start=1):
            rows.append(
                {
                    "run_id": f"{dataset}-{method}-{rate}-{seed}",
                    "dataset": dataset,
                    "backbone": "toy-rn",
                    "method": method,
                    "loss": "ce",
                    "noise_kind": "symmetric",
                    "noise_rate": rate,
                    "n_ctx": 16,
                    "seed": seed,
                    "test_acc": a / 100,
                }
            )
    return pd.DataFrame(rows)


def _gap(direction=">", threshold=0.0, decimals=1, over="mean"):
    """acc(prompt, 50%) - acc(linear probe, 50%), per dataset."""
    return claims.claim(
        "prompt beats the probe",
        "gap",
        lambda s: acc(s, "prompt", 0.5) - acc(s, "linear_probe", 0.5),
        threshold,
        direction,
        decimals=decimals,
        over=over,
    )


def _gaps(per_dataset: dict) -> pd.DataFrame:
    """A summary whose gap is ``per_dataset[d]`` (one value per seed) on each dataset d: the probe
    is at 50 on every seed, prompt tuning at 50 + gap."""
    accs = {}
    for d, gaps in per_dataset.items():
        accs[(d, "linear_probe", 0.5)] = [50.0] * len(gaps)
        accs[(d, "prompt", 0.5)] = [50.0 + g for g in gaps]
    return tables.summarize(_runs(accs))


def _one(spec, s):
    return claims.evaluate([spec], s).iloc[0]


def test_multisets_enumerate_every_draw_with_its_probability():
    counts, p = stats.multisets(3)
    assert counts.shape == (10, 3) and (counts.sum(1) == 3).all()
    assert len({tuple(c) for c in counts}) == 10
    assert sorted(np.round(p * 27).astype(int)) == [1, 1, 1, 3, 3, 3, 3, 3, 3, 6]
    assert p.sum() == pytest.approx(1.0)
    assert [stats.n_multisets(n) for n in (3, 4, 5)] == [10, 35, 126]


def test_weighted_interval_is_the_inverted_cdf():
    lo, hi = stats.weighted_interval([3.0, 0.0, np.nan, 1.0, 2.0], [0.03, 0.02, 0.5, 0.5, 0.45])
    # NaN left out; cumulative 0.02, 0.52, 0.97, 1.0 (of 1.0): 2.5 % at 1, 97.5 % at 3
    assert (lo, hi) == (1.0, 3.0)
    assert all(math.isnan(x) for x in stats.weighted_interval([np.nan], [1.0]))


def test_with_three_seeds_the_interval_runs_from_the_worst_seed_to_the_best():
    # every one of the 10 draws of 3 seeds: the all-one-seed draws weigh 1/27 > 2.5 % each, so the
    # ends of a mean over seeds are the lowest and highest seed's own gap
    r = _one(_gap(), _gaps({"a": [2.0, 4.0, 9.0]}))
    assert r["ours"] == pytest.approx(5.0) and r["ours 95% CI"] == "[2.0, 9.0]"
    assert r["verdict"] == "supported" and r["why"] == "" and r["datasets"] == "1/1"
    r = _one(_gap(), _gaps({"a": [-1.0, 2.0, 5.0]}))  # the seeds straddle 0
    assert r["ours"] == pytest.approx(2.0) and r["ours 95% CI"] == "[-1.0, 5.0]"
    assert r["verdict"] == "inconclusive" and r["why"] == claims.STRADDLES
    r = _one(_gap(), _gaps({"a": [-6.0, -4.0, -2.0]}))
    assert r["verdict"] == "refuted" and r["ours 95% CI"] == "[-6.0, -2.0]"
    r = _one(_gap(threshold=-2.0), _gaps({"a": [-6.0, -4.0, -2.0]}))  # the threshold is not above it
    assert r["verdict"] == "refuted"


def test_four_seeds_exact_interval_by_hand():
    # gaps 0, 1, 2, 10: 35 draws, probability 4! / prod(c!) / 4^4. Lowest means: 0 (1/256),
    # 0.25 (4/256), then 0.5 ({0,0,0,2}: 4/256, {0,0,1,1}: 6/256): cumulative 5/256 < 2.5 % <= 15/256.
    # Highest: 10 (1/256), 8 (4/256), 7.75 (4/256), 7.5 (4/256): P(> 7.75) = 5/256 <= 2.5 % < 9/256.
    r = _one(_gap(decimals=2), _gaps({"a": [0.0, 1.0, 2.0, 10.0]}))
    assert r["ours"] == pytest.approx(3.25) and r["ours 95% CI"] == "[0.50, 7.75]"
    assert r["verdict"] == "supported"  # wholly above the threshold


def test_the_direction_decides_the_side():
    s = _gaps({"a": [2.0, 4.0, 9.0]})
    assert _one(_gap("<"), s)["verdict"] == "refuted"
    assert _one(_gap("<", threshold=10.0), s)["verdict"] == "supported"
    assert _one(_gap("<", threshold=5.0), s)["verdict"] == "inconclusive"


def test_one_seed_settings_stay_in_every_resample():
    accs = {("a", "zeroshot", 0.0): [50.0], ("a", "prompt", 0.0): [52.0, 55.0, 60.0]}
    s = tables.summarize(_runs(accs))
    assert list(stats.seed_blocks(s)) == [(1, 2, 3)]  # zero-shot, at seed 1 only, is no block
    spec = claims.claim("beats zero-shot", "gap", lambda s: acc(s, "prompt", 0.0) - acc(s, "zeroshot"), 0.0)
    r = _one(spec, s)
    assert r["ours 95% CI"] == "[2.0, 10.0]" and r["verdict"] == "supported"


def test_a_mean_that_one_cell_carries_is_inconclusive():
    # no seed spread (each dataset's gap is the same on every seed): only the cells decide
    r = _one(_gap(), _gaps({"a": [10.0] * 3, "b": [-1.0] * 3, "c": [-1.0] * 3}))
    assert r["ours"] == pytest.approx(2.7) and r["datasets"] == "1/3" and r["ours 95% CI"] == "[2.7, 2.7]"
    assert r["verdict"] == "inconclusive" and r["why"] == claims.CARRIED  # without a: -1
    r = _one(_gap(), _gaps({"a": [3.0] * 3, "b": [2.0] * 3, "c": [1.0] * 3}))
    assert r["verdict"] == "supported" and r["why"] == ""  # without a: 1.5, still above
    # a refutation one cell carries is no better: without c the rest is above the threshold
    r = _one(_gap(), _gaps({"a": [1.0] * 3, "b": [1.0] * 3, "c": [-10.0] * 3}))
    assert r["verdict"] == "inconclusive" and r["why"] == claims.CARRIED
    # a claim about the worst cell is that cell: no cell carries it
    r = _one(_gap(over="worst"), _gaps({"a": [1.0] * 3, "b": [1.0] * 3, "c": [-10.0] * 3}))
    assert r["verdict"] == "refuted" and r["ours"] == pytest.approx(-10.0)


def test_two_seeds_and_one_seed_are_inconclusive():
    r = _one(_gap(), _gaps({"a": [5.0, 6.0], "b": [7.0, 8.0]}))
    assert r["verdict"] == "inconclusive" and r["why"] == "2 seeds: no interval" and r["ours 95% CI"] == "n/a"
    r = _one(_gap(), _gaps({"a": [5.0], "b": [7.0]}))
    assert r["verdict"] == "inconclusive" and r["why"] == "1 seed: no interval"
    r = _one(_gap(), _gaps({"a": [5.0, 6.0], "b": [-9.0, -9.0]}))  # both reasons, said both
    assert r["why"] == f"2 seeds: no interval; {claims.CARRIED}"


def test_values_with_no_seeds_behind_them_get_point_verdicts():
    s = _gaps({"a": [2.0, 4.0, 9.0]})
    bare = s.drop(columns=tables.SEEDS)  # a summary that kept no seeds (the paper's, or by hand)
    r = _one(_gap(), bare)
    assert r["verdict"] == "supported" and r["why"] == claims.POINT and r["ours 95% CI"] == "n/a"
    outside = claims.claim("measured elsewhere", "x", lambda s: pd.Series({"a": 0.3}), 0.0, on_paper=False)
    r = _one(outside, s)  # reads nothing of the seeded frame
    assert r["verdict"] == "supported" and r["why"] == claims.POINT
    r = _one(claims.claim("below", "x", lambda s: pd.Series({"a": -0.3}), 0.0), s)
    assert r["verdict"] == "refuted" and r["why"] == claims.POINT


def test_blocks_of_other_seeds_are_drawn_apart_and_deterministically():
    accs = {("a", "random_prompt", 0.0): [float(x) for x in range(10, 30)]}  # 20 draws
    accs.update({("a", "prompt", 0.5): [52.0, 55.0, 60.0], ("a", "linear_probe", 0.5): [50.0] * 3})
    s = tables.summarize(_runs(accs))
    assert sorted(len(b) for b in stats.seed_blocks(s)) == [3, 20]
    rp = claims.claim("far above chance", "x", lambda s: acc(s, "random_prompt") - 10.0, 0.0)
    t = claims.evaluate([_gap(), rp], s)
    # the gap reads the trained seeds only: their exact 10 draws, not the random prompts'
    assert t.iloc[0]["ours 95% CI"] == "[2.0, 10.0]" and t.iloc[0]["verdict"] == "supported"
    lo, hi = (float(x) for x in t.iloc[1]["ours 95% CI"].strip("[]").split(", "))
    assert t.iloc[1]["ours"] == pytest.approx(9.5) and lo < 9.5 < hi and t.iloc[1]["verdict"] == "supported"
    assert claims.evaluate([_gap(), rp], s).equals(t)  # Monte Carlo from a fixed seed


def test_compare_verdicts_lists_only_the_changed():
    old = [
        {"claim": "A", "measured": "x", "verdict": "supported", "why": ""},
        {"claim": "B", "measured": "y", "verdict": "inconclusive", "why": "2 seeds: no interval"},
        {"claim": "B", "measured": "y", "verdict": "refuted", "why": ""},
        {"claim": "C", "measured": "z", "supported": "yes"},  # a table from before the verdicts
    ]
    assert claims.compare_verdicts(old, old) == []
    new = [dict(r) for r in old[:3]]
    new[2]["verdict"] = "supported"
    new.append({"claim": "D", "measured": "w", "verdict": "refuted", "why": ""})
    changed = claims.compare_verdicts(old, new)
    assert [(c["claim"], c["old"], c["new"]) for c in changed] == [
        ("B", "refuted", "supported"),
        ("C", "supported", None),
        ("D", None, "refuted"),
    ]
    t = claims.evaluate([_gap()], _gaps({"a": [2.0, 4.0, 9.0]}))
    assert claims.compare_verdicts(claims.show(t).rows, t) == []  # a ClaimsTable's rows, or the frame


def _lab_rows(noisy_per_seed):
    """The lab runs of one cell (8 classes, 16 shots, full checkpoint): prompt tuning 90 % clean and
    ``noisy_per_seed`` at 50 %, Classifier-R 80 % and 40 % on every seed."""
    rows = []
    for seed, noisy in enumerate(noisy_per_seed, start=1):
        for method, clean, bad in (("prompt", 0.9, noisy), ("classifier_r", 0.8, 0.4)):
            for rate, a in ((0.0, clean), (0.5, bad)):
                rows.append(
                    dict(
                        run_id=f"{method}-{rate}-{seed}",
                        dataset="toy-objects-8",
                        loss="ce",
                        pretrained="default",
                        temperature=None,
                        method=method,
                        noise_rate=rate,
                        seed=seed,
                        shots=16,
                        test_acc=a,
                        train_fit_noisy=0.3,
                    )
                )
    return pd.DataFrame(rows)


def test_lab_claims_resample_the_cells_seeds():
    h6 = [c for c in lab.lab_claims(None) if c["text"].startswith("H6")]
    # drops 10, 20, 30 of Classifier-R's 40: ratios 0.25, 0.5, 0.75 per seed, 0.5 of the mean drops
    r = _one(h6[0], lab.cell_table(_lab_rows([0.8, 0.7, 0.6])))
    assert r["ours"] == pytest.approx(0.5) and r["ours 95% CI"] == "[0.25, 0.75]"
    assert r["verdict"] == "inconclusive" and r["why"] == claims.STRADDLES
    r = _one(h6[0], lab.cell_table(_lab_rows([0.86, 0.84, 0.82])))  # drops 4, 6, 8: ratios 0.1 to 0.2
    assert r["ours 95% CI"] == "[0.10, 0.20]" and r["verdict"] == "supported"
    r = _one(h6[0], lab.cell_table(_lab_rows([0.86, 0.84])))
    assert r["verdict"] == "inconclusive" and r["why"] == "2 seeds: no interval"
