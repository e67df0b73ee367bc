"""The label seam (``ptnl.data.labels``): every way of making a run's training set and labels
behind ``training_set``, the settings each kind takes (``check``), and the pseudo-labels of UPL
and Robust UPL (``ptnl.data.pseudo``: which images, under which labels)."""

import dataclasses

import numpy as np
import pytest
import torch

from ptnl.data import labels as L
from ptnl.data import pseudo
from ptnl.data.base import Split
from ptnl.data.manifest import MANIFEST_KIND, write_manifest
from ptnl.data.noise import NoisyLabels
from ptnl.tools.speed import register_tiny_clip, synthetic_dataset
from ptnl.train import engine, ensemble, scores
from ptnl.train.config import RunConfig

SHOTS = 3
N_CLASSES = 4
PSEUDO_INFO = {
    "pseudo_label_acc",
    "zeroshot_train_acc",
    "n_unique",
    "n_short_classes",
    "n_empty_classes",
    "class_counts",
    "predicted_counts",
}
NO_RATE = (MANIFEST_KIND, *L.PSEUDO_KINDS)  # kinds whose labels come from elsewhere: rate stays 0

# -- selection (pure numpy) --------------------------------------------------------------------------


def pl(pred, conf, n_classes):
    return pseudo.PseudoLabels(np.asarray(pred, np.int64), np.asarray(conf, np.float32), n_classes)


def test_topk_takes_the_most_confident_per_class_each_image_once():
    #        0    1    2    3    4    5    6    7    8
    pred = [0, 0, 1, 0, 1, 0, 2, 1, 0]
    conf = [0.5, 0.9, 0.8, 0.7, 0.3, 0.9, 0.6, 0.8, 0.1]
    s = pseudo.select(pl(pred, conf, 4), shots=2, selection="topk")
    # class 0: conf 0.9 at 1 and 5 (tie -> lower index first), class 1: 0.8 at 2 and 7, class 2: only 6
    assert s.idx.tolist() == [1, 5, 2, 7, 6] and s.labels.tolist() == [0, 0, 1, 1, 2]
    assert s.predicted.tolist() == [5, 3, 1, 0] and s.counts.tolist() == [2, 2, 1, 0]
    assert s.n_short_classes == 1 and s.n_empty_classes == 1
    assert len(set(s.idx.tolist())) == len(s.idx)


def test_fill_replace_tops_short_classes_up_to_k_with_every_image_kept():
    pred, conf = [0, 0, 1, 0, 1, 0, 2, 1, 0], np.linspace(0.9, 0.1, 9)
    for selection in ("topk", "random"):
        s = pseudo.select(pl(pred, conf, 4), shots=4, selection=selection, fill="replace", seed=3)
        assert s.counts.tolist() == [4, 4, 4, 0]  # the empty class 3 stays empty
        assert s.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
        assert set(s.idx[s.labels == 1].tolist()) == {2, 4, 7}  # all three, plus one duplicate
        assert s.idx[s.labels == 2].tolist() == [6] * 4
        assert s.n_short_classes == 2  # reported as short although topped up


def test_random_selection_is_seeded_per_class_and_without_replacement():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 3, 300)
    conf = rng.random(300)
    a = pseudo.select(pl(pred, conf, 3), 16, "random", seed=1)
    assert np.array_equal(a.idx, pseudo.select(pl(pred, conf, 3), 16, "random", seed=1).idx)
    assert not np.array_equal(a.idx, pseudo.select(pl(pred, conf, 3), 16, "random", seed=2).idx)
    assert a.counts.tolist() == [16, 16, 16] and len(set(a.idx.tolist())) == 48
    assert np.array_equal(pred[a.idx], a.labels)
    # not the top-K: random draws include less confident images
    top = pseudo.select(pl(pred, conf, 3), 16, "topk")
    assert conf[a.idx].mean() < conf[top.idx].mean()
    # a class's draw depends only on its own members: relabelling class-2 images leaves class 0 alone
    pred2 = np.where(pred == 2, 1, pred)
    b = pseudo.select(pl(pred2, conf, 3), 16, "random", seed=1)
    assert np.array_equal(a.idx[a.labels == 0], b.idx[b.labels == 0])


def test_topk_pseudo_labels_are_cleaner_when_confidence_tracks_correctness():
    # Calibrated synthetic zero-shot: an image is correct with probability equal to its confidence.
    rng = np.random.default_rng(0)
    n, c = 4000, 5
    conf = rng.uniform(0.2, 1.0, n)
    true = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < conf, true, (true + rng.integers(1, c, n)) % c)
    p = pl(pred, conf, c)
    top = pseudo.select(p, 16, "topk")
    rnd = pseudo.select(p, 16, "random", seed=1)
    acc_top = (top.labels == true[top.idx]).mean()
    acc_rnd = (rnd.labels == true[rnd.idx]).mean()
    assert acc_top > 0.9 and acc_rnd < 0.8 and acc_top - acc_rnd > 0.15


def test_select_rejects_bad_arguments():
    p = pl([0, 1], [0.5, 0.5], 2)
    with pytest.raises(ValueError, match="shots"):
        pseudo.select(p, 0)
    with pytest.raises(ValueError, match="selection"):
        pseudo.select(p, 2, "best")
    with pytest.raises(ValueError, match="fill"):
        pseudo.select(p, 2, "topk", fill="repeat")


def test_noisy_labels_are_the_pseudo_labels_over_the_ground_truth():
    ds = synthetic_dataset(n_classes=3, train_per_class=3, test_per_class=1)  # image i is class i % 3
    sel = pseudo.select(pl([0, 1, 2, 0, 0, 2, 0, 1, 1], np.linspace(0.1, 0.9, 9), 3), shots=2)
    nl = pseudo.noisy_labels(ds, sel, seed=5)
    assert sel.idx.tolist() == [4, 6, 7, 8, 2, 5]  # per class the two most confident, in index order
    assert nl.noisy.tolist() == [0, 0, 1, 1, 2, 2] and nl.true.tolist() == [1, 0, 1, 2, 2, 2]
    assert nl.is_noisy.tolist() == [True, False, False, True, False, False]
    assert nl.kind == pseudo.PSEUDO_KIND and nl.noise_rate == pytest.approx(2 / 6) and nl.seed == 5


# -- every kind behind one call -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from ptnl.models.clip import load_clip

    return load_clip(register_tiny_clip("ptnl-tiny-labels", tmp_path_factory.mktemp("cfg")), pretrained=None)


@pytest.fixture
def ds():
    return synthetic_dataset(n_classes=N_CLASSES, train_per_class=10, test_per_class=3)


class Counting:
    """The engine's scores (``ptnl.train.scores.Scorer`` on the tiny CLIP), counting what is asked."""

    def __init__(self, bundle, ds):
        self.inner = scores.Scorer(lambda: bundle, ds, torch.device("cpu"), "fp32")
        self.calls = []

    def probs(self, idx):
        self.calls.append("probs")
        return self.inner.probs(idx)

    def top1(self):
        self.calls.append("top1")
        return self.inner.top1()


def _request(kind, manifest=None, **kw):
    return L.LabelRequest(
        kind,
        SHOTS,
        0.0 if kind in NO_RATE else 0.25,
        seed=1,
        noise_file=manifest if kind == MANIFEST_KIND else None,
        **kw,
    )


@pytest.fixture
def manifest(ds, tmp_path):
    """A manifest of a symmetric K-shot draw of ``ds`` (seed 2)."""
    made = L.training_set(ds, L.LabelRequest("symmetric", SHOTS, 0.5, seed=2))
    return str(write_manifest(tmp_path / "m.csv", ds, made.idx, made.labels)), made


@pytest.mark.parametrize("kind", list(L.KINDS))
def test_every_label_kind_gives_a_training_set(kind, ds, bundle, manifest, fresh_store):
    req = _request(kind, manifest[0])
    sc = Counting(bundle, ds)
    made = L.training_set(ds, req, sc)
    assert isinstance(made, L.TrainingSet) and isinstance(made.labels, NoisyLabels)
    idx, nl, n = made.idx, made.labels, len(made.idx)
    assert idx.dtype == np.int64 and idx.ndim == 1 and 0 < n <= SHOTS * N_CLASSES
    assert idx.min() >= 0 and idx.max() < len(ds.train)
    assert len(nl) == len(nl.noisy) == len(nl.is_noisy) == n
    assert np.array_equal(nl.true, ds.train.labels[idx])  # the ground truth of the images chosen
    assert np.array_equal(nl.is_noisy, nl.noisy != nl.true)
    assert nl.noisy.min() >= 0 and nl.noisy.max() < N_CLASSES
    # the model's view of the images is asked for only by the kinds that read it
    assert sc.calls == {"confusion": ["probs"], "pseudo_topk": ["top1"], "pseudo_random": ["top1"]}.get(
        kind, []
    )
    if kind in L.PSEUDO_KINDS:
        info = made.info
        assert set(info) == PSEUDO_INFO and nl.kind == pseudo.PSEUDO_KIND
        assert sum(info["class_counts"]) == n and sum(info["predicted_counts"]) == len(ds.train)
        assert info["pseudo_label_acc"] == pytest.approx(1 - nl.is_noisy.mean())
        assert info["n_unique"] == len(set(idx.tolist())) == n  # fill="all": each image once
        top = sc.inner.top1()  # the labels are zero-shot CLIP's predictions on the images chosen
        assert np.array_equal(nl.noisy, top.pred[idx])
        assert info["zeroshot_train_acc"] == pytest.approx((top.pred == ds.train.labels).mean())
    else:
        assert made.info == {} and L.training_set(ds, req, sc).info == {}
    if kind == MANIFEST_KIND:  # the file's set and labels, as exported
        exported = manifest[1]
        assert np.array_equal(idx, exported.idx) and np.array_equal(nl.noisy, exported.labels.noisy)
    elif kind not in L.PSEUDO_KINDS and kind != "ptnl":  # relabelling a K-shot draw: K per class
        assert np.bincount(nl.true, minlength=N_CLASSES).tolist() == [SHOTS] * N_CLASSES
    again = L.training_set(ds, req, Counting(bundle, ds))  # the same request, the same set
    assert np.array_equal(again.idx, idx) and np.array_equal(again.labels.noisy, nl.noisy)


@pytest.mark.parametrize("kind", [k for k in L.KINDS if "noise_rate" in L.KINDS[k].group_across])
def test_relabelling_kinds_keep_the_draw_and_flip_labels_with_the_rate(kind, ds, bundle, fresh_store):
    noisy = L.training_set(ds, dataclasses.replace(_request(kind), noise_rate=0.5), Counting(bundle, ds))
    clean = L.training_set(ds, dataclasses.replace(_request(kind), noise_rate=0.0))  # no scores needed
    assert np.array_equal(noisy.idx, clean.idx)  # the same images at every rate: paired runs
    assert clean.labels.n_noisy == 0 and noisy.labels.n_noisy > 0


def test_pseudo_kinds_select_from_selection_seed_not_seed(ds, bundle, fresh_store):
    sc = Counting(bundle, ds)
    base = _request("pseudo_random", selection_seed=1)
    a = L.training_set(ds, base, sc)
    b = L.training_set(ds, dataclasses.replace(base, seed=2), sc)  # another member of the ensemble
    c = L.training_set(ds, dataclasses.replace(base, selection_seed=2), sc)
    d = L.training_set(ds, dataclasses.replace(base, seed=2, selection_seed=None), sc)  # None: the seed
    assert np.array_equal(a.idx, b.idx) and not np.array_equal(a.idx, c.idx)
    assert np.array_equal(c.idx, d.idx) and np.array_equal(c.labels.noisy, d.labels.noisy)
    k = max(a.info["predicted_counts"]) + 2  # more than any class has: every predicted class is short
    topped = L.training_set(ds, dataclasses.replace(base, shots=k, fill="replace"), sc)
    counts = np.bincount(topped.labels.noisy, minlength=N_CLASSES)
    predicted = np.array(topped.info["predicted_counts"])
    assert (counts[predicted > 0] == k).all() and (counts[predicted == 0] == 0).all()
    assert topped.info["n_short_classes"] == (predicted > 0).sum()
    assert topped.info["n_unique"] == len(set(topped.idx.tolist())) < len(topped.idx)


def test_a_dataset_with_its_own_noisy_labels_trains_on_them_at_rate_0(ds):
    truth = ds.train.labels
    web = truth.copy()
    web[::3] = (web[::3] + 1) % N_CLASSES
    web_ds = dataclasses.replace(
        ds, train=Split(ds.train.refs, web, ds.train.image_loader), train_true_labels=truth
    )
    for kind in ("symmetric", "pair", "nlprompt_sym", "instance"):
        made = L.training_set(web_ds, dataclasses.replace(_request(kind), noise_rate=0.0))
        assert made.labels.kind == L.REAL_KIND, kind
        assert np.array_equal(made.labels.noisy, web[made.idx]) and np.array_equal(
            made.labels.true, truth[made.idx]
        )
        assert made.labels.n_noisy == int((web[made.idx] != truth[made.idx]).sum()) > 0
        with pytest.raises(ValueError, match="carries real noisy labels: train on them at noise_rate 0"):
            L.training_set(web_ds, _request(kind))
    with pytest.raises(ValueError, match="PTNL's sampler makes synthetic ones"):
        L.training_set(web_ds, dataclasses.replace(_request("ptnl"), noise_rate=0.0))


# -- what each kind takes ----------------------------------------------------------------------------


def test_check_rejects_what_a_kind_does_not_take():
    for kind in L.KINDS:
        req = _request(kind, "m.csv")
        L.check(req)  # the defaults are fine for every kind
        if kind in L.PSEUDO_KINDS:
            L.check(dataclasses.replace(req, fill="replace", selection_seed=2))
            continue
        with pytest.raises(ValueError, match=r"fill='replace' only applies to the pseudo-label kinds"):
            L.check(dataclasses.replace(req, fill="replace"))
        with pytest.raises(ValueError, match=r"selection_seed=2 only applies to the pseudo-label kinds"):
            L.check(dataclasses.replace(req, selection_seed=2))
        if kind != "confusion":
            with pytest.raises(ValueError, match="only applies to noise_kind='confusion'"):
                L.check(dataclasses.replace(req, confusion_from="sample"))
    for kind in NO_RATE:
        with pytest.raises(ValueError, match="leave noise_rate at 0.0"):
            L.check(dataclasses.replace(_request(kind, "m.csv"), noise_rate=0.25))
    pseudo_req = _request("pseudo_topk")
    with pytest.raises(ValueError, match="fill must be one of"):
        L.check(dataclasses.replace(pseudo_req, fill="repeat"))
    with pytest.raises(ValueError, match="selection_seed must be an integer >= 0"):
        L.check(dataclasses.replace(pseudo_req, selection_seed=-1))
    with pytest.raises(ValueError, match="go together"):
        L.check(_request(MANIFEST_KIND))  # no file
    with pytest.raises(ValueError, match="go together"):
        L.check(dataclasses.replace(_request("symmetric"), noise_file="m.csv"))
    with pytest.raises(ValueError, match="noise_kind must be one of"):
        L.check(_request("uniform"))
    tiny_ds = synthetic_dataset(n_classes=2, train_per_class=2)
    with pytest.raises(ValueError, match="only applies to the pseudo-label kinds"):  # before anything is made
        L.training_set(tiny_ds, dataclasses.replace(_request("symmetric"), fill="replace"))


def test_a_run_config_is_checked_by_its_label_kind():
    assert RunConfig(dataset="toy-shapes").label_request() == L.LabelRequest("symmetric", 16, 0.0, 1)
    c = RunConfig(dataset="toy-shapes", noise_kind="pseudo_random", fill="replace", selection_seed=3, seed=2)
    assert c.label_request() == L.LabelRequest("pseudo_random", 16, 0.0, 2, fill="replace", selection_seed=3)
    with pytest.raises(ValueError, match="only applies to the pseudo-label kinds"):
        RunConfig(dataset="toy-shapes", fill="replace")
    with pytest.raises(ValueError, match="only applies to the pseudo-label kinds"):
        RunConfig(dataset="toy-shapes", noise_kind="ptnl", selection_seed=1)
    with pytest.raises(ValueError, match="zero-shot pseudo-labels: leave noise_rate at 0.0"):
        RunConfig(dataset="toy-shapes", noise_kind="pseudo_topk", noise_rate=0.5)


def test_group_fields_are_the_loss_fields_and_what_the_kind_lets_differ():
    key = engine.group_key
    c = RunConfig(dataset="toy-shapes", backbone="toy-rn", noise_rate=0.25)
    # relabelling kinds: the loss and optimiser fields, and the seed and the noise
    for other in (
        c.replace(seed=2),
        c.replace(noise_rate=0.5),
        c.replace(noise_kind="pair"),
        c.replace(loss="gce"),
    ):
        assert key(other) == key(c)
    assert key(c.replace(shots=4)) != key(c)
    m = ensemble.config("robust_upl_ce", "toy-shapes", "toy-rn")
    assert key(m.replace(seed=2)) == key(m) == key(m.replace(loss="gce", loss_params={"q": 0.5}))
    for other in (
        m.replace(selection_seed=2),
        m.replace(fill="replace"),
        m.replace(noise_kind="pseudo_topk"),
    ):
        assert key(other) != key(m)  # another training set
    assert L.KINDS["pseudo_topk"].group_across == ("seed",) and L.KINDS["ptnl"].group_across == ()
    assert set(engine.GROUP_LOSS_FIELDS) == {
        "loss",
        "loss_params",
        "lr",
        "momentum",
        "weight_decay",
        "warmup_lr",
        "grad_ratio",
    }
