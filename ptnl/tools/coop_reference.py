"""The benchmarks' reference: CoOp's training step written plainly, on an open_clip model.

``CoOpReference`` is CoOp's CustomCLIP (trainers/coop.py): prompts at the full context length, the
whole text tower over all classes every step, the image tower on the batch every step; and
``reference_fit`` trains it with the run's recipe, crops and data order, so ``ptnl.tools.speed``
can time ptnl's engine against it and check that ``exact`` mode reaches the same numbers.
"""

from __future__ import annotations

import torch

from ptnl.train import features as F
from ptnl.train.optim import lr_at_epoch


class CoOpReference(torch.nn.Module):
    """CoOp's CustomCLIP (trainers/coop.py) on an open_clip model: prompts
    ``[SOS][ctx][name][.][EOT][pad...]`` at the full context length, the whole text tower over all
    classes every step, the image tower on the batch every step."""

    def __init__(self, bundle, classnames, ctx: torch.Tensor):
        super().__init__()
        m = bundle.model
        n_ctx = ctx.shape[0]
        prompts = [" ".join(["X"] * n_ctx) + " " + c.replace("_", " ") + "." for c in classnames]
        tokens = bundle.tokenizer(prompts).to(bundle.device)
        with torch.no_grad():
            emb = m.token_embedding(tokens)
        self.register_buffer("prefix", emb[:, :1])
        self.register_buffer("suffix", emb[:, 1 + n_ctx :])
        self.register_buffer("eot", tokens.argmax(-1))
        self.ctx = torch.nn.Parameter(ctx.detach().clone())
        self.__dict__["clip"] = m  # frozen, not a submodule

    def forward(self, images):
        m = self.clip
        image = m.encode_image(images)
        c = self.prefix.shape[0]
        x = torch.cat([self.prefix, self.ctx.unsqueeze(0).expand(c, -1, -1), self.suffix], dim=1)
        x = m.transformer(x + m.positional_embedding, attn_mask=m.attn_mask)
        x = m.ln_final(x)[torch.arange(c), self.eot]
        text = (
            m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
        )
        image = torch.nn.functional.normalize(image, dim=-1)
        text = torch.nn.functional.normalize(text, dim=-1)
        return m.logit_scale.exp() * image @ text.t()


def reference_fit(run, ref: CoOpReference, on_step=None) -> list[float]:
    """The reference training loop: same order, crops and learning rates as ptnl's ``exact``."""
    cfg = run.cfg
    opt = torch.optim.SGD([ref.ctx], lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    order = F.generator("order", cfg.seed)
    labels = torch.as_tensor(run.labels.noisy)
    losses = []
    for epoch in range(1, cfg.epochs + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at_epoch(cfg, epoch)
        for batch in F.epoch_batches(run.n_train, cfg.batch_size, order):
            if on_step:
                on_step()
            pixels = F.exact_batch(
                run.bundle, run.dataset.train, run.train_idx[batch.numpy()], cfg.seed, epoch
            )
            logits = ref(pixels.to(run.device))
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[batch].to(run.device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    if on_step:
        on_step()
    return losses
