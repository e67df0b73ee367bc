"""Notebook 10's section: the bench's grid, tables and claims (ptnl.sections.beyond)."""

import numpy as np
import pandas as pd
import pytest

from ptnl.report import claims
from ptnl.sections import SECTIONS
from ptnl.sections import beyond as B

TOY = {
    "symmetric": [0.5],
    "ptnl": [0.25, 0.5],
    "nlprompt_sym": [0.5],
    "nlprompt_asym": [0.5],
    "instance": [0.5],
}


def _runs(**kw):
    base = dict(backbone="toy-rn", datasets=["toy-shapes"], protocols=TOY, seeds=[1, 2], epochs=2)
    return B.bench_runs(**{**base, **kw})


def test_grid_counts():
    cfgs = _runs()
    settings = sum(len(v) for v in TOY.values())
    per_seed = len(B.BENCH_METHODS) * (settings + 1) + len(B.SELECTOR_METHODS) * settings
    assert len(cfgs) == 1 + 2 * per_seed  # one zero-shot run, then every seed's
    assert len({c.run_id for c in cfgs}) == len(cfgs)
    clean = [c for c in cfgs if c.noise_rate == 0 and c.method not in ("zeroshot",)]
    assert {c.noise_kind for c in clean} == {B.CLEAN_KIND}
    assert SECTIONS["10_beyond"] is B.SECTION


def test_protocols_as_a_list_or_a_mapping():
    listed = _runs(protocols=list(TOY), noise_rates=[0.0, 0.5])  # rate 0 is the clean run anyway
    assert {(c.noise_kind, c.noise_rate) for c in listed if c.noise_rate > 0} == {(k, 0.5) for k in TOY}
    with pytest.raises(ValueError, match="noise_rates too"):
        _runs(protocols=list(TOY))
    with pytest.raises(ValueError, match="not one of the bench's noise kinds"):
        _runs(protocols={"confusion": [0.5]})
    with pytest.raises(ValueError, match="fraction"):
        _runs(protocols={"ptnl": [50]})


def test_real_noise_datasets_run_on_their_own_labels():
    cfgs = _runs(datasets=["toy-shapes"], real_noise_datasets=["Food101N"], seeds=[1])
    food = [c for c in cfgs if c.dataset == "Food101N"]
    assert len(food) == 1 + len(B.BENCH_METHODS) + len(B.SELECTOR_METHODS)
    assert all(c.noise_rate == 0 for c in food)


def _fake_frame():
    """Store rows as ``results`` gives them, with made-up accuracies and detection scores."""
    rows = []
    for seed in (1, 2):
        for method, loss in [*B.BENCH_METHODS, *((m, "ce") for m in B.SELECTOR_METHODS)]:
            for kind, rate in [(B.CLEAN_KIND, 0.0), *B.noisy_settings(TOY)]:
                if method in B.SELECTOR_METHODS and rate == 0:
                    continue
                acc = 0.8 - rate * (0.4 if (method, loss) == ("prompt", "ce") else 0.1) + 0.01 * seed
                row = dict(
                    dataset="toy-shapes",
                    backbone="toy-rn",
                    method=method,
                    loss=loss,
                    noise_kind=kind,
                    noise_rate=rate,
                    seed=seed,
                    n_ctx=16,
                    test_acc=acc,
                    n_noisy=int(rate * 128),
                )
                if method in B.SELECTOR_METHODS:
                    for i, name in enumerate(("small_loss", "gmm_loss", "ot", "agreement")):
                        row.update(
                            {
                                f"{name}_noise_auroc": 0.8 + 0.02 * i,
                                f"{name}_noise_precision": 0.7,
                                f"{name}_noise_recall": 0.6,
                            }
                        )
                    row.update(ot_wrong_to_right=10.0, ot_right_to_wrong=2.0)
                elif method in B.IN_METHOD and rate > 0:
                    row.update(
                        selection_noise_auroc=0.9, selection_noise_precision=0.8, selection_noise_recall=0.7
                    )
                rows.append(row)
    rows.append(
        dict(
            dataset="toy-shapes",
            backbone="toy-rn",
            method="zeroshot",
            loss="ce",
            noise_kind="symmetric",
            noise_rate=0.0,
            seed=1,
            n_ctx=16,
            test_acc=0.76,
            n_noisy=0,
        )
    )
    return pd.DataFrame(rows)


def test_tables_and_claims_read_the_runs():
    df = _fake_frame()
    t = B.accuracy_table(df)
    assert list(t.columns[:3]) == ["dataset", "method", "clean"] and "ptnl 25%" in t.columns
    assert t.loc[t["method"] == "prompt tuning", "ptnl 50%"].item() == "61.5 ± 0.7"
    det = B.detection_frame(df)
    assert set(det["scores"]) == {"zero-shot CLIP", "trained CoOp", "its own training"}
    auroc = B.detection_table(det)
    row = auroc[(auroc["scores"] == "trained CoOp") & (auroc["selector"] == "ot")]
    assert row["instance 50%"].item() == pytest.approx(0.84)
    corr = B.correction_table(det)
    assert set(corr["count"]) == {"wrong_to_right", "right_to_wrong", "net"}
    s = B.bench_summary(df)
    table = claims.evaluate(B.beyond_claims(s), s)
    got = dict(zip(table["claim"], table["ours"]))
    nl_vs_gce = next(v for k, v in got.items() if k.startswith("NLPrompt beats CoOp + GCE"))
    assert nl_vs_gce == pytest.approx(0.0, abs=1e-9)  # both lose 10 points a unit of rate here
    ot_vs_small = next(v for k, v in got.items() if k.startswith("OT selection"))
    assert ot_vs_small == pytest.approx(0.04, abs=1e-3)
    assert (table["verdict"] != "n/a").all()
    # each claim reads the frame it is given (what the verdicts resample), not the one it was made with
    moved = s.assign(mean=s["mean"].where(s["variant"] != "nlprompt", s["mean"] + 1.0))
    nl_claim = next(c for c in B.beyond_claims(s) if c["text"].startswith("NLPrompt beats CoOp + GCE"))
    assert nl_claim["fn"](moved).iloc[0] == pytest.approx(nl_vs_gce + 1.0)
    assert B.published_table(df).empty  # nothing is published for the toy world


def test_published_table_sets_the_paper_beside_ours():
    df = _fake_frame()
    df["dataset"] = "DTD"
    df = df[~((df["method"] == "prompt") & (df["noise_kind"] != "ptnl") & (df["noise_rate"] > 0))]
    p = B.published_table(df)
    assert set(p["noise_rate"]) == {0.0, 0.25, 0.5}
    row = p[p["noise_rate"] == 0.5]
    assert row["published (Wu et al. 2023, Table 6)"].item() == 46.19  # Table 6, DTD, prompt, 50 %
    assert row["ours (CoOp, ptnl protocol)"].item() == pytest.approx(100 * np.mean([0.61, 0.62]), abs=0.05)
