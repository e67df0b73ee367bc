"""JoAPR (Guo & Gu, CVPR 2024; code yunncheng/JoAPR, trainers/joapr.py): one prompt,
jointly partitioning the training set and refurbishing its labels.

- ``warmup`` epochs of CE + alpha1 * negative entropy on all samples;
- then every epoch: per-sample score CE + entropy on centre crops (its test transform), min-max
  scaled, averaged over the last 5 epochs; a 2-component GMM (DivideMix's settings, seeded here);
  clean = below the GMM's intersection-style root (its formula as coded, variances where it says
  std) OR clean posterior above tau, tau <- the noise rate estimated with the previous tau (from
  0.5); weight w = posterior (first main epoch), then posterior * p(given label). (JoAPR multiplies
  vectors in two different sample orders; we pair each sample with its own.)
- clean samples learn sharpen(w * onehot + (1 - w) * p, T) and noisy ones sharpen(p, T), T = 2,
  mixed up with lambda ~ Beta(0.001, 0.001) (so lambda ~ 1: mixing features instead of pixels
  changes nothing), loss soft CE + alpha2 * KL(uniform || batch-mean prediction); max(#clean,
  #noisy batches) steps, the shorter side cycled;
- warm-up and alphas: rn50.yaml's (1, 0.5, 0.5), or its README's per-dataset table where the
  dataset and rate are in it (``joapr_recipe``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F_nn

from ptnl.models import selectors as S
from ptnl.models.clip import autocast
from ptnl.train import features as F
from ptnl.train.methods import learner as L
from ptnl.train.methods.base import Method

JOAPR_HISTORY = 5  # epochs of scaled losses averaged before the GMM (JoAPR's AVERAGE_LOSS)
# JoAPR's README, "The settings of Warmup epochs, alpha1, and alpha2" (yunncheng/JoAPR @ 4a6d926): per
# dataset, (warm-up epochs, alpha1, alpha2) at 12.5, 25, 37.5, 50, 62.5, 75 % of Symflip, then of
# Pairflip noise. Other datasets and rates (the toy world, Food-101N, clean runs) keep rn50.yaml's.
JOAPR_RATES = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75)
_A = ((1, 0.5, 1.0),) * 6  # ImageNet, SUN397, StanfordCars: the same in every cell
JOAPR_README_SETTINGS = {
    "ImageNet": (_A, _A),
    "SUN397": (_A, _A),
    "Caltech101": (((1, 0.5, 0.5),) * 6, ((1, 0.5, 0.5),) * 6),
    "Flowers102": (((20, 0.5, 1.0),) * 5 + ((1, 0.5, 1.0),), ((20, 0.5, 1.0),) * 3 + ((1, 0.5, 1.0),) * 3),
    "StanfordCars": (_A, _A),
    "FGVCAircraft": (
        ((150, 0.1, 1.0),) * 5 + ((150, 0.5, 1.0),),
        ((150, 0.1, 1.0),) * 5 + ((150, 0.5, 1.0),),
    ),
    "OxfordPets": (((1, 0.2, 1.0),) * 6, ((1, 0.2, 1.0),) * 6),
    "UCF101": (((20, 0.5, 1.0),) * 5 + ((1, 0.5, 1.0),), ((20, 0.5, 1.0),) * 2 + ((1, 0.5, 1.0),) * 4),
    "EuroSAT": (
        ((10, 0.2, 1.0),) * 3 + ((1, 0.2, 1.0),) * 2 + ((1, 0.1, 1.0),),
        ((10, 0.2, 1.0),) * 4 + ((1, 0.2, 1.0),) + ((1, 0.1, 1.0),),
    ),
    "DTD": (((1, 0.2, 1.0),) * 6, ((1, 0.2, 1.0),) * 5 + ((1, 0.1, 1.0),)),
}
PAIR_KINDS = ("pair", "nlprompt_asym")  # class-to-class flips: the Pairflip column


def joapr_recipe(cfg) -> dict:
    """JoAPR's constants for ``cfg``: rn50.yaml's, with warm-up and alphas from its README's table
    where the dataset and rate are in it (Pairflip's column for c -> c + 1 noise, else Symflip's)."""
    recipe = dict(JOAPR.recipe)
    rows = JOAPR_README_SETTINGS.get(cfg.dataset)
    hit = [i for i, r in enumerate(JOAPR_RATES) if abs(r - cfg.noise_rate) < 1e-9]
    if rows is not None and hit:
        warmup, alpha1, alpha2 = rows[cfg.noise_kind in PAIR_KINDS][hit[0]]
        recipe.update(warmup=warmup, alpha1=alpha1, alpha2=alpha2)
    return recipe


def _sharpen(p: torch.Tensor, t: float) -> torch.Tensor:
    p = p.pow(t)  # Dassl's sharpen_prob: p^T / sum p^T
    return p / p.sum(1, keepdim=True)


def _joapr_threshold(gmm, scores):
    """pred_1 of JoAPR's eval_train: the quadratic root from the GMM means and (co)variances, as
    coded (``std`` there holds variances); NaN (no real root) selects nothing."""
    clean_c, noisy_c = int(np.argmin(gmm.means_.ravel())), int(np.argmax(gmm.means_.ravel()))
    mu_c, mu_n = gmm.means_.ravel()[[clean_c, noisy_c]]
    s_c, s_n = gmm.covariances_.ravel()[[clean_c, noisy_c]]
    a = s_n**2 - s_c**2
    b = 2 * (mu_n * s_c**2 - mu_c * s_n**2)
    c = (mu_c * s_n) ** 2 - (mu_n * s_c) ** 2 + 2 * (s_n * s_c) ** 2 * np.log(2 * s_c / s_n + 1e-8)
    with np.errstate(invalid="ignore"):
        thres = (-b + np.sqrt(b**2 - 4 * a * c)) / (2 * a + 1e-10)
    return scores < thres


def _joapr_partition(r, module, center, history, state):
    given = torch.as_tensor(r.labels.noisy)
    p = L.probs(r, module, center).cpu().double()
    log_p = p.clamp(min=1e-300).log()
    score = -log_p.gather(1, given[:, None]).squeeze(1) - (p * log_p).sum(1)  # CE + entropy
    score = ((score - score.min()) / (score.max() - score.min()).clamp(min=1e-12)).numpy()
    history.append(score)
    x = np.mean(history[-JOAPR_HISTORY:], axis=0)[:, None]
    gmm = S.fit_gmm(x, r.cfg.seed)
    post = gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))]
    pred1 = _joapr_threshold(gmm, x.ravel())
    n_clean = int((post > state["tau"]).sum())
    state["tau"] = (len(post) - n_clean) / len(post)  # JoAPR: (C * K - n_clean) / (C * K)
    clean = pred1 | (post > state["tau"])
    w = post if state["first"] else post * p.gather(1, given[:, None]).squeeze(1).numpy()
    state["first"] = False
    # The labels it trains towards: refurbished on the clean side, the prediction on the noisy side.
    wt = torch.as_tensor(w)[:, None]
    refurbished = (wt * F_nn.one_hot(given, p.shape[1]).double() + (1 - wt) * p).argmax(1)
    proposed = torch.where(torch.as_tensor(clean), refurbished, p.argmax(1)).numpy()
    return S.Selected(post, clean, proposed), torch.as_tensor(w, dtype=torch.float32)


def train_joapr(method, r, progress=False) -> dict:
    cfg, recipe = r.cfg, joapr_recipe(r.cfg)
    module, bank, source, opt = L.setup(method, r, progress)
    center = F.center_bank(r)[0]
    order = F.generator("order", cfg.seed)
    mix_rng = np.random.default_rng(F.derive_seed("mixup", cfg.seed))
    given = torch.as_tensor(r.labels.noisy, device=r.device)
    n_cls = r.dataset.n_classes
    everyone = torch.arange(r.n_train)
    hist = {"train_loss": [], "lr": [], "clean_share": []}
    history, state, sel = [], {"tau": 0.5, "first": True}, None
    warmup = min(recipe["warmup"], cfg.epochs)

    def warm_loss(z, y):
        log_p = z.log_softmax(-1)
        return F_nn.nll_loss(log_p, y) + recipe["alpha1"] * (log_p.exp() * log_p).sum(1).mean()

    for epoch in range(1, cfg.epochs + 1):
        hist["lr"].append(L.set_lr(opt, cfg, epoch))
        total, seen = 0.0, 0
        if epoch <= warmup:
            for b in F.epoch_batches(r.n_train, cfg.batch_size, order):
                y = given[b.to(r.device)]
                total += L.step(r, module, opt, source(epoch, b), lambda z, y=y: warm_loss(z, y)) * len(b)
                seen += len(b)
            hist["train_loss"].append(total / max(seen, 1))
            continue
        sel, w = _joapr_partition(r, module, center, history, state)
        clean = torch.as_tensor(sel.clean)
        hist["clean_share"].append(float(clean.float().mean()))
        xs, us = everyone[clean], everyone[~clean]
        bx = [xs[b] for b in F.epoch_batches(len(xs), cfg.batch_size, order)] if len(xs) else []
        bu = [us[b] for b in F.epoch_batches(len(us), cfg.batch_size, order)] if len(us) else []
        for k in range(max(len(bx), len(bu))):
            feats, targets = [], []
            with autocast(r.device, r.precision):
                emb = module.class_embeddings()  # one text pass: the step's, its targets read it detached
            with torch.no_grad(), autocast(r.device, r.precision):
                fixed = emb.detach()
                if bx:
                    b = bx[k % len(bx)]
                    fx = source(epoch, b)
                    px = module(fx, fixed).float().softmax(-1)
                    wx = w[b].to(r.device)[:, None]
                    onehot = F_nn.one_hot(given[b.to(r.device)], n_cls).float()
                    feats.append(fx)
                    targets.append(_sharpen(wx * onehot + (1 - wx) * px, recipe["temperature"]))
                if bu:
                    fu = source(epoch, bu[k % len(bu)])
                    feats.append(fu)
                    targets.append(_sharpen(module(fu, fixed).float().softmax(-1), recipe["temperature"]))
            x_all, t_all = torch.cat(feats), torch.cat(targets)
            lam = mix_rng.beta(recipe["beta"], recipe["beta"])
            lam = max(lam, 1 - lam)
            perm = torch.as_tensor(mix_rng.permutation(len(x_all)), device=r.device)
            x_mix = lam * x_all + (1 - lam) * x_all[perm]
            t_mix = lam * t_all + (1 - lam) * t_all[perm]

            def joapr_loss(z, t=t_mix):
                log_p = z.log_softmax(-1)
                lx = -(t * log_p).sum(1).mean()
                mean_p = log_p.exp().mean(0)
                prior = torch.full_like(mean_p, 1.0 / n_cls)
                return lx + recipe["alpha2"] * (prior * (prior / mean_p).log()).sum()

            total += L.step(r, module, opt, x_mix, joapr_loss, emb) * len(x_all)
            seen += len(x_all)
        hist["train_loss"].append(total / max(seen, 1))
    out = L.finish(r, module, bank, hist, progress)
    return {**out, **(L.selection_metrics(sel, r) if sel is not None else {})}


class JoAPRFamily(L.LearnerFamily):
    name = "joapr"

    def learn(self, method, r, progress=False):
        return train_joapr(method, r, progress)


FAMILY = JoAPRFamily()
JOAPR = Method(
    "joapr",
    "JoAPR",
    FAMILY,
    "JoAPR (Guo & Gu 2024): GMM clean/noisy partition each epoch, label refurbishment",
    color="#17becf",
    # configs/trainers/JoAPR/rn50.yaml and train.py's defaults (TEMP 2, BETA 0.001, ALPHA1 0.5,
    # ALPHA2 0.5, WARMUP_EPOCH 1); its README tunes warm-up and alphas per dataset.
    recipe={"warmup": 1, "alpha1": 0.5, "alpha2": 0.5, "temperature": 2.0, "beta": 0.001},
    selector="GMM",
)
METHODS = (JOAPR,)
