import json
import math

import pytest
import torch

from ptnl.models.toy import TOY_BACKBONES
from ptnl.tools import fidelity
from ptnl.tools.cli import main
from ptnl.tools.speed import register_tiny_clip, synthetic_dataset
from ptnl.train import engine
from ptnl.train.config import RunConfig


def test_spectrum_counts_equal_directions_exactly():
    # +-e_i for i < k: centred, unit rows, covariance with k equal eigenvalues -> PR = rank = k
    for k in (1, 3, 7):
        e = torch.eye(16)[:k]
        stats = fidelity.spectrum(torch.cat([e, -e]) * 3.0)  # scale is normalised away
        assert stats["feature_participation_ratio"] == pytest.approx(k)
        assert stats["feature_entropy_rank"] == pytest.approx(k)


def test_spectrum_of_unequal_directions_sits_between_one_and_their_count():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 8, generator=g) * torch.tensor([4.0, 2, 1, 1, 0.5, 0.5, 0.1, 0.1])
    stats = fidelity.spectrum(x)
    assert 1 < stats["feature_participation_ratio"] < stats["feature_entropy_rank"] < 8
    with pytest.raises(ValueError, match="at least 2"):
        fidelity.spectrum(x[:1])


def test_mean_pairwise_cosine_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, generator=g) + 1.0
    u = torch.nn.functional.normalize(x.double(), dim=-1)
    c = u @ u.T
    brute = (c.sum() - c.diagonal().sum()) / (50 * 49)
    assert fidelity.mean_pairwise_cosine(x) == pytest.approx(float(brute), abs=1e-12)


def test_expected_calibration_error_by_hand():
    # confident and always right, or exactly as confident as accurate: 0
    assert fidelity.expected_calibration_error(torch.eye(3), [0, 1, 2]) == 0.0
    p = torch.tensor([[0.75, 0.25]] * 4)
    assert fidelity.expected_calibration_error(p, [0, 0, 0, 1]) == pytest.approx(0.0)
    # confident and always wrong: 1; two bins weighted by their sizes
    assert fidelity.expected_calibration_error(torch.eye(2), [1, 0]) == pytest.approx(1.0)
    p = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.55, 0.45]])
    # bin (0.9, 1]: confidence 0.95, accuracy 0.5; bin (0.5, 0.6]: confidence 0.55, accuracy 1
    assert fidelity.expected_calibration_error(p, [0, 1, 0, 0]) == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    with pytest.raises(ValueError, match=r"probs \[N, C\]"):
        fidelity.expected_calibration_error(p, [0, 1])


def test_calibrated_temperature_follows_the_rule():
    from ptnl.tools.toy.calibrate import _mean_nll, calibrated_temperature, mean_zero_shot_ece

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (400,), generator=g)
    cos = (0.05 * torch.randn(400, 5, generator=g, dtype=torch.float64)).index_put_(
        (torch.arange(400), y), torch.tensor(0.08, dtype=torch.float64), accumulate=True
    )
    tasks = [(cos, y), (cos.flip(0), y.flip(0))]
    c = calibrated_temperature(tasks, target_ece=0.1)
    t_nll = c["nll_optimal"]
    for t in (t_nll * 0.9, t_nll * 1.1):  # the NLL-optimal temperature is the minimum
        assert _mean_nll(tasks, t) >= _mean_nll(tasks, t_nll) - 1e-9
    assert c["shipped"] > t_nll and mean_zero_shot_ece(tasks, c["shipped"]) == pytest.approx(0.1, abs=0.005)
    # the two ends: a target the NLL optimum already exceeds, and one not reached by 100
    assert calibrated_temperature(tasks, target_ece=0.0)["shipped"] == round(t_nll, 1)
    assert calibrated_temperature(tasks, target_ece=0.99)["shipped"] == 100.0


def test_pairs_are_parsed_with_clear_errors():
    assert fidelity.parse_pair("ViT-B/32:DTD") == ("ViT-B/32", "DTD")
    assert fidelity.parse_pair("toy-rn:toy-fine") == ("toy-rn", "toy-fine")
    for bad in ("toy-rn", ":DTD", "RN50:"):
        with pytest.raises(ValueError, match="BACKBONE:DATASET"):
            fidelity.parse_pair(bad)


def test_cli_errors_name_what_is_wrong(capsys, fresh_store):
    assert main(["fidelity", "RN51:toy-shapes", "--no-fits"]) == 2
    assert "unknown backbone 'RN51'" in capsys.readouterr().err
    assert main(["fidelity", "toy-rn:toy-nope", "--no-fits"]) == 2
    assert "unknown toy task" in capsys.readouterr().err


def test_shipped_toy_clip_is_measured_as_the_engine_sees_it(fresh_store):
    m = fidelity.measure("toy-rn", "toy-shapes", fits=False)
    shipped = json.loads(TOY_BACKBONES["toy-rn"].checkpoint.with_suffix(".json").read_text())
    assert m["temperature"] == pytest.approx(shipped["temperature"]["shipped"], rel=1e-3)
    assert 0 <= m["zero_shot_ece"] <= 1
    assert 1 <= m["feature_participation_ratio"] <= m["embed_dim"]
    assert m["ctx_init_rms"] == pytest.approx(0.02 * math.sqrt(128))
    # the same zero-shot accuracy as the engine's zero-shot run
    zs = engine.run(RunConfig(dataset="toy-shapes", backbone="toy-rn", method="zeroshot"))
    assert m["zero_shot_acc"] == pytest.approx(zs["test_acc"])


def test_fits_go_through_the_run_store(tmp_path_factory, fresh_store, use_dataset, monkeypatch, capsys):
    tiny = register_tiny_clip("ptnl-tiny-fidelity", tmp_path_factory.mktemp("cfg"))
    use_dataset(synthetic_dataset(n_classes=4, train_per_class=6, test_per_class=3))
    recipe = {"shots": 4, "epochs": 2, "batch_size": 8, "n_ctx": 4}
    m = fidelity.measure(tiny, "toy-synthetic", pretrained=None, recipe=recipe)
    for k in ("classifier_r_fit", "prompt_fit", "classifier_r_test_acc", "prompt_test_acc"):
        assert 0.0 <= m[k] <= 1.0
    # a second report loads the finished runs instead of training them again
    monkeypatch.setattr(engine, "train_configs", lambda *a, **k: pytest.fail("a done run was redone"))
    assert fidelity.measure(tiny, "toy-synthetic", pretrained=None, recipe=recipe) == m
    text = fidelity.report([m, {**m, "dataset": "other"}])
    assert "feature_participation_ratio" in text and f"{m['backbone']}:other" in text
    # the command line: random weights by name, rows printed and written as JSON
    out = tmp_path_factory.mktemp("out") / "rows.json"
    assert (
        main(["fidelity", f"{tiny}:toy-synthetic", "--pretrained", "none", "--no-fits", "--json", str(out)])
        == 0
    )
    [row] = json.loads(out.read_text())
    assert row["weights"] == "random" and row["zero_shot_acc"] == m["zero_shot_acc"]
    assert "modality_gap" in capsys.readouterr().out


@pytest.mark.slow  # about 25 s on 2 cores: RN50 built at random, prompt tuning through its text tower
def test_real_backbone_on_a_real_layout(tmp_path, fresh_store, use_dataset, monkeypatch):
    # The real path end to end: RN50 (random weights: none can be downloaded here) on a fake DTD
    # laid out as CoOp lays it out, fits included (a tiny recipe keeps it fast).
    from fakedata import write_coop

    from ptnl.data import load_dataset

    write_coop(tmp_path / "data", "DTD", n_train=(3,), n_test=4)
    monkeypatch.setenv("PTNL_DATA", str(tmp_path / "data"))
    use_dataset(load_dataset("DTD"))  # runs read this root's DTD, whatever an earlier test loaded
    recipe = {"shots": 2, "epochs": 1, "batch_size": 4, "n_ctx": 2}
    m = fidelity.measure("RN50", "DTD", pretrained=None, recipe=recipe)
    assert (m["backbone"], m["dataset"], m["weights"], m["n_classes"], m["n_test"]) == (
        "RN50",
        "DTD",
        "random",
        2,
        8,
    )
    assert m["embed_dim"] == 1024 and m["ctx_init_rms"] == pytest.approx(0.02 * math.sqrt(512))
    assert 1 <= m["feature_participation_ratio"] <= 8 and 0 <= m["prompt_fit"] <= 1
