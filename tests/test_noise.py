import numpy as np
import pytest

from ptnl.data import fewshot_indices
from ptnl.data.noise import KINDS, PAPER_NOISE_RATES, NoisyLabels, add_noise, n_noisy_per_class

C, K = 10, 16
LABELS = np.repeat(np.arange(C), K)  # a 16-shot set, grouped by class


@pytest.mark.parametrize("rate", PAPER_NOISE_RATES)
def test_symmetric_exact_count_per_class_never_the_true_label(rate):
    nl = add_noise(LABELS, C, "symmetric", rate, seed=1)
    assert isinstance(nl, NoisyLabels)
    np.testing.assert_array_equal(nl.true, LABELS)
    per_class = np.bincount(LABELS[nl.is_noisy], minlength=C)
    np.testing.assert_array_equal(per_class, np.full(C, round(rate * K)))  # 0, 2, 4, 8 of 16
    assert np.all(nl.noisy[nl.is_noisy] != nl.true[nl.is_noisy])
    np.testing.assert_array_equal(nl.noisy[~nl.is_noisy], LABELS[~nl.is_noisy])
    assert nl.actual_rate == pytest.approx(rate)
    assert nl.noisy.dtype == np.int64 and nl.is_noisy.dtype == bool


def test_symmetric_wrong_labels_are_uniform_over_the_other_classes():
    # 1000 samples of class 0 at 50 % noise, 500 wrong labels over 9 classes: a chi-square check.
    labels = np.zeros(1000, dtype=np.int64)
    nl = add_noise(labels, C, "symmetric", 0.5, seed=3)
    counts = np.bincount(nl.noisy[nl.is_noisy], minlength=C)
    assert counts[0] == 0 and counts.sum() == 500
    expected = 500 / 9
    chi2 = ((counts[1:] - expected) ** 2 / expected).sum()
    assert chi2 < 26.1  # the 0.999 quantile of chi-square with 8 degrees of freedom


def test_rounding_is_half_up_and_per_class():
    assert n_noisy_per_class(0.125, 4) == 1  # 0.5 -> 1 (Python's round would give 0)
    assert n_noisy_per_class(0.3, 10) == 3
    labels = np.array([0] * 4 + [1] * 8 + [2] * 3)
    nl = add_noise(labels, 3, "symmetric", 0.25, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[nl.is_noisy], minlength=3), [1, 2, 1])


def test_nested_across_rates_and_reproducible():
    previous = None
    for rate in (0.0, 0.125, 0.25, 0.5, 0.75):
        nl = add_noise(LABELS, C, "symmetric", rate, seed=7)
        again = add_noise(LABELS, C, "symmetric", rate, seed=7)
        np.testing.assert_array_equal(nl.noisy, again.noisy)
        if previous is not None:
            # noisy stays noisy, with the same wrong label
            assert np.all(nl.is_noisy[previous.is_noisy])
            np.testing.assert_array_equal(nl.noisy[previous.is_noisy], previous.noisy[previous.is_noisy])
        previous = nl
    other_seed = add_noise(LABELS, C, "symmetric", 0.5, seed=8)
    assert not np.array_equal(other_seed.is_noisy, previous.is_noisy)


def test_flip_variant_is_per_sample_and_nested():
    labels = np.repeat(np.arange(C), 200)
    nl = add_noise(labels, C, "symmetric_flip", 0.25, seed=2)
    per_class = np.bincount(labels[nl.is_noisy], minlength=C)
    assert len(set(per_class.tolist())) > 1  # not an exact count per class
    assert abs(nl.actual_rate - 0.25) < 0.03  # 2000 Bernoulli(0.25): sd ~ 0.01
    assert np.all(nl.noisy[nl.is_noisy] != labels[nl.is_noisy])
    higher = add_noise(labels, C, "symmetric_flip", 0.5, seed=2)
    assert np.all(higher.is_noisy[nl.is_noisy])


def test_pair_noise():
    nl = add_noise(LABELS, C, "pair", 0.25, seed=1)
    np.testing.assert_array_equal(nl.noisy[nl.is_noisy], (LABELS[nl.is_noisy] + 1) % C)
    np.testing.assert_array_equal(np.bincount(LABELS[nl.is_noisy], minlength=C), np.full(C, 4))
    # the same samples as symmetric noise at the same seed: paired comparisons across kinds
    np.testing.assert_array_equal(nl.is_noisy, add_noise(LABELS, C, "symmetric", 0.25, seed=1).is_noisy)


def test_confusion_from_a_matrix():
    rng = np.random.default_rng(0)
    matrix = rng.random((C, C)) + 5 * np.eye(C)  # diagonal largest, as for a decent zero-shot model
    nl = add_noise(LABELS, C, "confusion", 0.5, seed=1, scores=matrix)
    favourite = np.where(np.eye(C, dtype=bool), -1, matrix).argmax(1)
    np.testing.assert_array_equal(nl.noisy[nl.is_noisy], favourite[LABELS[nl.is_noisy]])
    np.testing.assert_array_equal(np.bincount(LABELS[nl.is_noisy], minlength=C), np.full(C, 8))
    assert np.all(nl.noisy[nl.is_noisy] != LABELS[nl.is_noisy])


def test_confusion_from_probabilities_matrix_vs_sample():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array(
        [
            [0.6, 0.1, 0.3],  # class 0 mostly confused with 2 ...
            [0.2, 0.1, 0.7],  # ... predicted 2
            [0.5, 0.4, 0.1],  # this sample's own top wrong class is 1
            [0.1, 0.8, 0.1],
            [0.45, 0.5, 0.05],  # class 1: no wrong arg-max; mean probability decides: class 0
            [0.3, 0.6, 0.1],
        ]
    )
    matrix = add_noise(labels, 3, "confusion", 0.99, seed=0, scores=probs)  # round(0.99 * 3) = 3: all noisy
    np.testing.assert_array_equal(matrix.noisy, [2, 2, 2, 0, 0, 0])
    sample = add_noise(labels, 3, "confusion", 0.99, seed=0, scores=probs, confusion_from="sample")
    np.testing.assert_array_equal(sample.noisy, [2, 2, 1, 0, 0, 0])


def test_independent_of_the_fewshot_stream():
    # Noise and few-shot use different streams of the same seed: the few-shot set never moves
    # with the noise, and the noise's random order is not the few-shot draw's.
    train = np.repeat(np.arange(C), 40)
    picks = [fewshot_indices(train, K, seed=1) for _ in PAPER_NOISE_RATES]
    for rate, idx in zip(PAPER_NOISE_RATES, picks):
        add_noise(train[idx], C, "symmetric", rate, seed=1)
        np.testing.assert_array_equal(idx, picks[0])


def test_errors():
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        add_noise(LABELS, C, "symmetric", 1.0, seed=0)
    with pytest.raises(ValueError, match=r"outside \[0, 1\).*not a percentage"):
        add_noise(LABELS, C, "symmetric", 25, seed=0)
    with pytest.raises(ValueError, match=r"outside \[0, 1\)"):
        add_noise(LABELS, C, "symmetric", -0.1, seed=0)
    with pytest.raises(ValueError, match="valid kinds: " + ", ".join(KINDS)):
        add_noise(LABELS, C, "asymmetric", 0.1, seed=0)
    with pytest.raises(ValueError, match="needs scores"):
        add_noise(LABELS, C, "confusion", 0.1, seed=0)
    with pytest.raises(ValueError, match="only used by kind='confusion'"):
        add_noise(LABELS, C, "symmetric", 0.1, seed=0, scores=np.eye(C))
    with pytest.raises(ValueError, match="scores must be"):
        add_noise(LABELS, C, "confusion", 0.1, seed=0, scores=np.eye(C + 1))
    with pytest.raises(ValueError, match=r"lie in \[0, 10\)"):
        add_noise(np.array([0, 10]), C, "symmetric", 0.1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        add_noise(LABELS, C, "symmetric", 0.1, seed=-1)
    # rate 0 is the identity for every kind, confusion included without scores
    for kind in KINDS:
        assert add_noise(LABELS, C, kind, 0.0, seed=0).n_noisy == 0
