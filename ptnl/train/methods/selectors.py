"""The clean-sample selectors scored on their own (``select_zeroshot``, ``select_prompt``): no
method of their own, the four
selectors of ``ptnl.models.selectors`` scored on one noisy training set, from zero-shot CLIP's
probabilities (centre crops) or from the CoOp prompt trained on it with the run's loss.
"""

from __future__ import annotations

import torch

from ptnl.models import heads
from ptnl.models import selectors as S
from ptnl.train import features as F
from ptnl.train.loop import accuracy
from ptnl.train.methods import learner as L
from ptnl.train.methods.base import Family, Method, init_module, train_modules
from ptnl.train.methods.prompt import prompt_module
from ptnl.train.scores import zeroshot_probs


def train_selectors(method, r, progress=False) -> dict:
    """Detection by every selector on the run's noisy set, from zero-shot CLIP or a trained CoOp
    prompt (``recipe["scores"]``): ``<selector>_noise_precision`` etc. (``selectors.detection``)."""
    recipe = method.recipe
    given = r.labels.noisy
    if recipe["scores"] == "zeroshot":
        p = zeroshot_probs(r.bundle, r.dataset, r.train_idx, r.device, r.precision).double()
        module = init_module(method, r.cfg, r.bundle, r.dataset, r.device)  # ZeroShotCLIP
        test_acc = accuracy(
            module, F.test_features(r, progress), r.dataset.test.labels, r.device, r.precision
        )
        out = {"test_acc": test_acc}
    else:
        [metrics], [module] = train_modules(method, [r], progress)
        p = L.probs(r, module, F.center_bank(r)[0]).cpu().double()
        out = dict(metrics)
    loss = -p.clamp(min=1e-300).log().gather(1, torch.as_tensor(given)[:, None]).squeeze(1).numpy()
    chosen = {
        "small_loss": S.small_loss(loss, given, r.dataset.n_classes, forget=r.labels.actual_rate),
        "gmm_loss": S.gmm_loss(loss, seed=r.cfg.seed),
        "ot": S.ot_labels(p, given),
        "agreement": S.agreement(p, given),
    }
    for name, sel in chosen.items():
        out.update(L.selection_metrics(sel, r, prefix=f"{name}_"))
    return out


class SelectorsFamily(Family):
    name = "selectors"

    def check(self, method, cfg):
        if cfg.feature_mode == "exact":
            raise ValueError(
                f"{method.name} scores the training set from cached features: use 'views' or 'center'"
            )

    def build(self, method, cfg, bundle, dataset, generator):
        if method.recipe["scores"] == "zeroshot":
            return heads.ZeroShotCLIP(bundle, dataset.prompts())
        return prompt_module(cfg, bundle, dataset, generator)

    def train(self, method, runs, progress=False):
        return [train_selectors(method, r, progress) for r in runs], [{} for _ in runs]


FAMILY = SelectorsFamily()
METHODS = (
    Method(
        "select_zeroshot",
        "selectors on zero-shot CLIP",
        FAMILY,
        "small-loss, GMM, OT and agreement selectors scored from zero-shot CLIP's probabilities",
        color="#404040",
        recipe={"scores": "zeroshot"},
    ),
    Method(
        "select_prompt",
        "selectors on the CoOp prompt",
        FAMILY,
        "the same selectors scored from the CoOp prompt trained on the noisy labels",
        color="#3b75af",
        recipe={"scores": "prompt"},
    ),
)
