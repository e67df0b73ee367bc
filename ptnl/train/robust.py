"""The noisy-label prompt learners after the paper, on ptnl's engine: NLPrompt, JoAPR, and the
clean-sample selectors scored on their own.

Each trains a CoOp prompt (``PromptCLIP``, context only) with the run's recipe (SGD, lr schedule,
batch size, views) and its own per-epoch data handling; the recipe constants of their code are
the ``Method.recipe`` of their registry entries (``ptnl.train.methods``).

**NLPrompt** (Pan et al., CVPR 2025; code qunovo/NLPrompt, trainers/nlprompt.py):
- PromptMAE (``nlprompt_mae``): every sample trained with NLPrompt's MAE, GCE at q = 1, i.e.
  1 - p_y (half of Ghosh et al.'s 2 (1 - p_y); the gradient scale differs by 2).
- PromptOT (``nlprompt``): before every epoch, the prompt being trained scores every training
  sample on this epoch's view; OT (``selectors.ot_labels``: cost -log_softmax(p), uniform
  marginals, Sinkhorn reg 0.01) splits them: clean where the transported label is the given one.
  The epoch trains the clean part with CE, then the noisy part with MAE, both on the given labels.
  ``nlprompt_ot_ce`` trains the clean part only (the noisy part left out): OT purification with CE.
  Departure: NLPrompt's OT pass runs over its training loader with drop_last, so up to 31 random
  samples a epoch get no OT label and land in the MAE part; we score every sample.
**JoAPR** (Guo & Gu, CVPR 2024; code yunncheng/JoAPR, trainers/joapr.py), one prompt:
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
**Selectors** (``select_zeroshot``, ``select_prompt``): no method of their own, the four
selectors of ``ptnl.models.selectors`` scored on one noisy training set, from zero-shot CLIP's
probabilities (centre crops) or from the CoOp prompt trained on it with the run's loss.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F_nn

from ptnl.models import selectors as S
from ptnl.models.clip import autocast
from ptnl.models.losses import get_loss
from ptnl.train import features as F
from ptnl.train import methods
from ptnl.train.config import lr_at_epoch
from ptnl.train.labels import zeroshot_probs
from ptnl.train.loop import batched_logits, evaluate, optimizer, training_fit
from ptnl.train.trainers import init_module, train_modules

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
    recipe = dict(methods.get(cfg.method).recipe)
    rows = JOAPR_README_SETTINGS.get(cfg.dataset)
    hit = [i for i, r in enumerate(JOAPR_RATES) if abs(r - cfg.noise_rate) < 1e-9]
    if rows is not None and hit:
        warmup, alpha1, alpha2 = rows[cfg.noise_kind in PAIR_KINDS][hit[0]]
        recipe.update(warmup=warmup, alpha1=alpha1, alpha2=alpha2)
    return recipe


def _setup(r, progress):
    module = init_module(r.cfg, r.bundle, r.dataset, r.device)
    bank = F.train_bank(r, progress)
    opt = optimizer(r, list(module.trainable_parameters()))
    return module, bank, F.feature_source(r, progress, bank), opt


def _set_lr(opt, cfg, epoch):
    lr = lr_at_epoch(cfg, epoch)
    for group in opt.param_groups:
        group["lr"] = lr
    return lr


def _step(r, module, opt, feats, loss_of_logits, emb=None) -> float:
    """One SGD step on ``feats``; ``emb``: the class embeddings of this step, when the caller has
    already run the text tower (with grad) for them."""
    with autocast(r.device, r.precision):
        logits = module(feats, module.class_embeddings() if emb is None else emb)
    loss = loss_of_logits(logits.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


@torch.no_grad()
def _probs(r, module, feats) -> torch.Tensor:
    return torch.cat([z.softmax(-1) for _, z in batched_logits(module, feats, r.device, r.precision)])


def _finish(r, module, bank, hist, progress) -> dict:
    acc = evaluate(module, F.test_features(r, progress), r.dataset.test.labels, r.device, r.precision)
    return {"test_acc": acc, **hist, **training_fit(module, r, progress, bank)}


def _selection_metrics(sel, r, prefix="selection_") -> dict:
    return {prefix + k: v for k, v in S.detection(sel, r.labels.true, r.labels.noisy).items()}


def train_nlprompt(r, progress=False) -> dict:
    cfg, recipe = r.cfg, methods.get(r.cfg.method).recipe
    module, bank, source, opt = _setup(r, progress)
    order = F.generator("order", cfg.seed)
    given = torch.as_tensor(r.labels.noisy, device=r.device)
    ce, mae = get_loss("ce"), get_loss("gce", q=1.0)  # NLPrompt's MAE: GCE at q = 1
    everyone = torch.arange(r.n_train)
    hist = {"train_loss": [], "lr": [], "clean_share": []}
    sel = None
    for epoch in range(1, cfg.epochs + 1):
        hist["lr"].append(_set_lr(opt, cfg, epoch))
        if recipe["ot"]:
            p = _probs(r, module, source(epoch, everyone))
            ot = S.ot_labels(p.cpu(), r.labels.noisy, reg=recipe["reg"])
            sel = S.Selected(ot.clean_score, ot.clean)  # NLPrompt trains on the given labels: no relabelling
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
                loss = _step(r, module, opt, source(epoch, batch), lambda z, y=y, fn=fn: fn(z, y))
                total += loss * len(batch)
                seen += len(batch)
        hist["train_loss"].append(total / max(seen, 1))
    if not recipe["ot"]:
        hist.pop("clean_share")
    out = _finish(r, module, bank, hist, progress)
    return {**out, **(_selection_metrics(sel, r) if sel is not None else {})}


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
    p = _probs(r, module, center).cpu().double()
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


def train_joapr(r, progress=False) -> dict:
    cfg, recipe = r.cfg, joapr_recipe(r.cfg)
    module, bank, source, opt = _setup(r, progress)
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
        hist["lr"].append(_set_lr(opt, cfg, epoch))
        total, seen = 0.0, 0
        if epoch <= warmup:
            for b in F.epoch_batches(r.n_train, cfg.batch_size, order):
                y = given[b.to(r.device)]
                total += _step(r, module, opt, source(epoch, b), lambda z, y=y: warm_loss(z, y)) * len(b)
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

            total += _step(r, module, opt, x_mix, joapr_loss, emb) * len(x_all)
            seen += len(x_all)
        hist["train_loss"].append(total / max(seen, 1))
    out = _finish(r, module, bank, hist, progress)
    return {**out, **(_selection_metrics(sel, r) if sel is not None else {})}


def train_selectors(r, progress=False) -> dict:
    """Detection by every selector on the run's noisy set, from zero-shot CLIP or a trained CoOp
    prompt (``recipe["scores"]``): ``<selector>_noise_precision`` etc. (``selectors.detection``)."""
    recipe = methods.get(r.cfg.method).recipe
    given = r.labels.noisy
    if recipe["scores"] == "zeroshot":
        p = zeroshot_probs(r.bundle, r.dataset, r.train_idx, r.device, r.precision).double()
        module = init_module(r.cfg, r.bundle, r.dataset, r.device)  # ZeroShotCLIP
        test_acc = evaluate(
            module, F.test_features(r, progress), r.dataset.test.labels, r.device, r.precision
        )
        out = {"test_acc": test_acc}
    else:
        [metrics], [module] = train_modules([r], progress)
        p = _probs(r, module, F.center_bank(r)[0]).cpu().double()
        out = dict(metrics)
    loss = -p.clamp(min=1e-300).log().gather(1, torch.as_tensor(given)[:, None]).squeeze(1).numpy()
    chosen = {
        "small_loss": S.small_loss(loss, given, r.dataset.n_classes, forget=r.labels.actual_rate),
        "gmm_loss": S.gmm_loss(loss, seed=r.cfg.seed),
        "ot": S.ot_labels(p, given),
        "agreement": S.agreement(p, given),
    }
    for name, sel in chosen.items():
        out.update(_selection_metrics(sel, r, prefix=f"{name}_"))
    return out


TRAINERS = {"nlprompt": train_nlprompt, "joapr": train_joapr, "selectors": train_selectors}
