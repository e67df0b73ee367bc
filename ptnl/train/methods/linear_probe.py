"""The linear probe of Figures 1 and 2: sklearn's L-BFGS logistic regression on image features,
its C picked on held-out views. It is fitted on one centre-crop feature per image, as CLIP's and
CoOp's linear probes are, and minimises cross-entropy only: where the paper trains a linear
probe with GCE or measures its gradients, a linear head trained by SGD stands in (the sections'
``SGD_LINEAR``, Classifier-R)."""

from __future__ import annotations

import numpy as np

from ptnl.models import heads
from ptnl.train import features as F
from ptnl.train.methods.base import Family, Method


class LinearProbeFamily(Family):
    name = "linear_probe"
    scales_logits = False
    feature_mode = "center"

    def train(self, method, runs, progress=False):
        return [self._train(r, progress) for r in runs], [{} for _ in runs]

    @staticmethod
    def _train(r, progress) -> dict:
        # exact mode has no stored views: the probe sees centre crops, as CLIP's
        bank = F.train_bank(r, progress) if r.cfg.feature_mode != "exact" else F.center_bank(r)
        x = bank.reshape(-1, bank.shape[-1]).numpy()  # every view is one more sample
        y = np.tile(r.labels.noisy, bank.shape[0])
        # All views of one image stay on the same side of the held-out split that picks C; otherwise
        # the held-out score sees near-copies of training rows and favours weak regularisation.
        groups = np.tile(np.arange(r.n_train), bank.shape[0])
        probe = heads.linear_probe(x, y, n_classes=r.dataset.n_classes, seed=r.cfg.seed, groups=groups)
        test = F.test_features(r, progress).numpy()
        acc = float((probe.predict(test) == np.asarray(r.dataset.test.labels)).mean())
        return {"test_acc": acc, "probe_C": probe.C}


FAMILY = LinearProbeFamily()
METHODS = (
    Method(
        "linear_probe",
        "linear probe",
        FAMILY,
        "sklearn L-BFGS logistic regression on image features (Figure 1/2)",
        color="#de8f05",
        losses={"gce": "#ece133"},
    ),
)
