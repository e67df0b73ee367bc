"""NLPrompt (Pan et al., CVPR 2025; code qunovo/NLPrompt, trainers/nlprompt.py) and its parts.

- PromptMAE (``nlprompt_mae``): every sample trained with NLPrompt's MAE, GCE at q = 1, i.e.
  1 - p_y (half of Ghosh et al.'s 2 (1 - p_y); the gradient scale differs by 2).
- PromptOT (``nlprompt``): before every epoch, the prompt being trained scores every training
  sample on this epoch's view; OT (``selectors.ot_labels``: cost -log_softmax(p), uniform
  marginals, Sinkhorn reg 0.01) splits them: clean where the transported label is the given one.
  The epoch trains the clean part with CE, then the noisy part with MAE, both on the given labels.
  ``nlprompt_ot_ce`` trains the clean part only (the noisy part left out): OT purification with CE.
  Departure: NLPrompt's OT pass runs over its training loader with drop_last, so up to 31 random
  samples an epoch get no OT label and land in the MAE part; we score every sample.
"""

from __future__ import annotations

import torch

from ptnl.models import selectors as S
from ptnl.models.losses import get_loss
from ptnl.train import features as F
from ptnl.train.methods import learner as L
from ptnl.train.methods.base import Method


class NLPromptFamily(L.LearnerFamily):
    name = "nlprompt"

    def learn(self, method, r, progress=False) -> dict:
        cfg, recipe = r.cfg, method.recipe
        module, bank, source, opt = L.setup(method, r, progress)
        order = F.generator("order", cfg.seed)
        given = torch.as_tensor(r.labels.noisy, device=r.device)
        ce, mae = get_loss("ce"), get_loss("gce", q=1.0)  # NLPrompt's MAE: GCE at q = 1
        everyone = torch.arange(r.n_train)
        hist = {"train_loss": [], "lr": [], "clean_share": []}
        sel = None
        for epoch in range(1, cfg.epochs + 1):
            hist["lr"].append(L.set_lr(opt, cfg, epoch))
            if recipe["ot"]:
                p = L.probs(r, module, source(epoch, everyone))
                ot = S.ot_labels(p.cpu(), r.labels.noisy, reg=recipe["reg"])
                sel = S.Selected(
                    ot.clean_score, ot.clean
                )  # NLPrompt trains on the given labels: no relabelling
                clean = torch.as_tensor(sel.clean)
                parts = [(everyone[clean], ce)]
                if recipe["noisy_loss"] == "mae":
                    parts.append((everyone[~clean], mae))
                hist["clean_share"].append(float(clean.float().mean()))
            else:
                parts = [(everyone, mae)]
            total, seen = 0.0, 0
            for part, fn in parts:
                if len(part) == 0:
                    continue
                for b in F.epoch_batches(len(part), cfg.batch_size, order):
                    batch = part[b]
                    y = given[batch.to(r.device)]
                    loss = L.step(r, module, opt, source(epoch, batch), lambda z, y=y, fn=fn: fn(z, y))
                    total += loss * len(batch)
                    seen += len(batch)
            hist["train_loss"].append(total / max(seen, 1))
        if not recipe["ot"]:
            hist.pop("clean_share")
        out = L.finish(r, module, bank, hist, progress)
        return {**out, **(L.selection_metrics(sel, r) if sel is not None else {})}


FAMILY = NLPromptFamily()
METHODS = (
    Method(
        "nlprompt_mae",
        "PromptMAE",
        FAMILY,
        "NLPrompt (Pan et al. 2025) without OT: CoOp trained with MAE (1 - p_y) on every sample",
        color="#8de5a1",
        recipe={"ot": False},
    ),
    Method(
        "nlprompt",
        "NLPrompt",
        FAMILY,
        "NLPrompt: OT purification each epoch, CE on the clean part, MAE on the noisy part",
        color="#d62728",
        recipe={"ot": True, "noisy_loss": "mae", "reg": 0.01},
        selector="OT",
    ),
    Method(
        "nlprompt_ot_ce",
        "PromptOT + CE",
        FAMILY,
        "NLPrompt's OT purification each epoch, CE on the clean part only",
        color="#ff9f9b",
        recipe={"ot": True, "noisy_loss": None, "reg": 0.01},
        selector="OT",
    ),
)
