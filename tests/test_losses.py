import math

import pytest
import torch
import torch.nn.functional as F

from ptnl.models.losses import LOSSES, RCE_LOG_ZERO, get_loss

# Hand-made logits with known softmax: row 0 is uniform over 4 classes, row 1 puts
# p = [e^2, 1, 1, 1] / (e^2 + 3) on the classes.
LOGITS = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
LABELS = torch.tensor([1, 0])
P_Y = torch.tensor([0.25, math.exp(2) / (math.exp(2) + 3)], dtype=torch.float64)
LOG_SUM = torch.tensor([4 * math.log(0.25), 2 - 4 * math.log(math.exp(2) + 3)], dtype=torch.float64)


def per_sample(name, **params):
    return get_loss(name, **params)(LOGITS, LABELS, reduction="none").double()


def test_closed_forms():
    torch.testing.assert_close(per_sample("ce"), -P_Y.log(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(per_sample("gce", q=0.5), (1 - P_Y.sqrt()) / 0.5, rtol=1e-6, atol=1e-7)
    # q = 0.5 by default
    torch.testing.assert_close(per_sample("gce"), 2 * (1 - P_Y.sqrt()), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(per_sample("mae"), 2 * (1 - P_Y), rtol=1e-6, atol=1e-7)
    rce = -math.log(1e-4) * (1 - P_Y)
    torch.testing.assert_close(
        per_sample("sce", alpha=0.1, beta=1.0), 0.1 * -P_Y.log() + rce, rtol=1e-6, atol=1e-6
    )
    nce = P_Y.log() / LOG_SUM
    torch.testing.assert_close(per_sample("nce_rce", alpha=1.0, beta=1.0), nce + rce, rtol=1e-6, atol=1e-6)
    # the uniform row: NCE = log(1/4) / (4 log(1/4)) = 1/4
    assert per_sample("nce_rce", alpha=1.0, beta=1e-12)[0].item() == pytest.approx(0.25, rel=1e-6)


def test_rce_matches_the_clamped_definition():
    # RCE as Wang et al.'s code writes it: -sum_k clamp(p_k) log clamp(onehot_k, 1e-4, 1).
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    p = logits.softmax(1).clamp(1e-7, 1)
    onehot = F.one_hot(labels, 5).float().clamp(1e-4, 1)
    rce = -(p * onehot.log()).sum(1)
    got = get_loss("sce", alpha=0.0, beta=1.0)(logits, labels, reduction="none")
    torch.testing.assert_close(got, rce, rtol=1e-5, atol=1e-5)
    assert RCE_LOG_ZERO == pytest.approx(math.log(1e-4))


def test_defaults_follow_the_papers():
    assert LOSSES["gce"][1] == {"q": 0.5}
    assert LOSSES["sce"][1] == {"alpha": 6.0, "beta": 0.1}
    assert LOSSES["nce_rce"][1] == {"alpha": 10.0, "beta": 0.1}


def test_gce_limits():
    logits = torch.randn(8, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.arange(8)
    ce = F.cross_entropy(logits, labels, reduction="none")
    near_ce = get_loss("gce", q=1e-6)(logits, labels, reduction="none").double()
    torch.testing.assert_close(near_ce, ce, rtol=1e-4, atol=1e-5)
    far = get_loss("gce", q=0.5)(logits, labels, reduction="none").double()
    assert (far - ce).abs().max() > 1e-2  # the limit test can fail: q = 0.5 is not CE
    p_y = logits.softmax(1)[torch.arange(8), labels]
    torch.testing.assert_close(get_loss("gce", q=1.0)(logits, labels, reduction="none").double(), 1 - p_y)
    torch.testing.assert_close(
        get_loss("gce", q=1.0)(logits, labels, reduction="none") * 2, get_loss("mae")(logits, labels, "none")
    )


def test_reduction_mean_is_the_mean_of_none():
    for name in LOSSES:
        fn = get_loss(name)
        assert fn(LOGITS, LABELS).item() == pytest.approx(fn(LOGITS, LABELS, reduction="none").mean().item())
        assert fn(LOGITS, LABELS, reduction="none").shape == (2,)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_finite_values_and_gradients_at_extreme_logits(name, dtype):
    # p_y -> 0 (row 0), p_y -> 1 (row 1), a mild row, and fp16 logits (PTNL's precision).
    logits = torch.tensor(
        [[-60.0, 60.0, 0.0], [60.0, -60.0, -60.0], [0.1, 0.2, 0.3]], dtype=dtype, requires_grad=True
    )
    labels = torch.tensor([0, 0, 2])
    loss = get_loss(name)(logits, labels, reduction="none")
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss).all(), loss
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all(), logits.grad
    assert loss[1].item() == pytest.approx(0.0, abs=1e-6)  # p_y = 1: nothing to learn
    assert loss[0].item() > loss[2].item()


def test_gce_gradient_is_downweighted_ce_gradient():
    logits = torch.tensor([[1.0, -0.5, 0.3]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([2])
    get_loss("gce", q=0.5)(logits, labels).backward()
    p = logits.detach().softmax(1)
    expected = p[0, 2] ** 0.5 * (p - F.one_hot(labels, 3))
    torch.testing.assert_close(logits.grad, expected.to(logits.grad.dtype))


def test_get_loss_errors_list_the_valid_choices():
    with pytest.raises(ValueError, match="valid names: ce, gce, mae, sce, nce_rce"):
        get_loss("focal")
    with pytest.raises(ValueError, match=r"its parameters: q=0.5"):
        get_loss("gce", alpha=1.0)
    with pytest.raises(ValueError, match="its parameters: none"):
        get_loss("ce", q=0.5)
    with pytest.raises(ValueError, match="0 < q <= 1"):
        get_loss("gce", q=0.0)
    with pytest.raises(ValueError, match="both 0"):
        get_loss("sce", alpha=0, beta=0)
    with pytest.raises(ValueError, match="reduction"):
        get_loss("ce")(LOGITS, LABELS, reduction="sum")
    with pytest.raises(ValueError, match="integer class indices"):
        get_loss("ce")(LOGITS, LABELS.float())
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        get_loss("mae")(LOGITS, torch.tensor([0, 4]))
    assert get_loss("NCE+RCE").params == {"alpha": 10.0, "beta": 0.1}
