"""The method registry: every method ptnl trains or evaluates, declared once.

A ``Method`` says how a run of it is trained (``trainer``: the engine's function for its family,
``ptnl.train.trainers.TRAINERS``), which module the engine builds for it (``module`` and its
``options``), the config rules it adds (``check``), the feature mode the sections always give it,
and how tables and figures show it (``label``, ``color``, and its loss variants in ``losses``).

Adding a method of an existing family is one entry here. A new family also needs its trainer in
``ptnl.train.trainers`` (and a module in ``ptnl.models`` if it trains one).

UPL and Robust UPL (Section 5) are registered too (``trainer="upl"``): their runs are
``ptnl.train.upl.UPLConfig``s, prompt tuning on zero-shot pseudo-labels, so ``RunConfig`` does not
take them as a ``method`` (``RUN_METHODS``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

LOSS_LABELS = {"ce": "CE", "gce": "GCE", "mae": "MAE", "sce": "SCE", "nce_rce": "NCE+RCE"}


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # as tables and figures name it
    trainer: str  # the engine's family: "module", "untrained", "linear_probe", "visual_ft", "upl"
    description: str
    module: str | None = (
        None  # what engine.build_module builds: "prompt", "linear_head", "zeroshot", "tenc_ft"
    )
    options: Mapping = field(default_factory=dict)  # that module's arguments (UPL: selection and loss)
    color: str | None = None  # the house colour; None: the next free one of the palette
    # Loss variants shown as "<label> (<LOSS>)", each with its house colour (None: the palette's).
    losses: Mapping[str, str | None] = field(default_factory=dict)
    feature_mode: str | None = None  # the feature mode the sections always run it with
    check: Callable | None = None  # an extra RunConfig rule: check(config) raises ValueError
    # The trainer's own constants (the robust learners of ptnl.train.robust): their code's values.
    recipe: Mapping = field(default_factory=dict)

    @property
    def groupable(self) -> bool:
        """Trained through the frozen text tower: runs can share one batched text pass."""
        return self.trainer == "module" and self.module == "prompt"

    @property
    def uses_labels(self) -> bool:
        """False for untrained methods: they run once, at noise rate 0 with CE."""
        return self.trainer != "untrained"

    @property
    def gradient_trained(self) -> bool:
        """Trained by SGD, so per-sample gradient norms exist (Section 4.4)."""
        return self.trainer in ("module", "visual_ft")


def _prompt_needs_context(c) -> None:
    if c.n_ctx == 0:
        raise ValueError(
            "method='prompt' with n_ctx=0 has nothing to learn (the prompt is the class name alone): "
            "run the paper's Ctx-0 as method='random_prompt' with n_ctx=0, an untrained evaluation"
        )


def _visual_ft_needs_images(c) -> None:
    if c.feature_mode != "exact":
        raise ValueError(
            "visual_ft trains the image tower, so its features cannot be cached: set feature_mode='exact'"
        )


def _recipe_owns_the_loss(c) -> None:
    if c.loss != "ce" or c.loss_params:
        raise ValueError(
            f"{c.method} trains with its own losses (its recipe in ptnl.train.methods): leave loss at 'ce'"
        )
    if c.feature_mode == "exact":
        raise ValueError(
            f"{c.method} re-scores every training sample each epoch: use feature_mode 'views' or 'center'"
        )


def _scores_need_features(c) -> None:
    if c.feature_mode == "exact":
        raise ValueError(f"{c.method} scores the training set from cached features: use 'views' or 'center'")


# Colours: seaborn's "colorblind" palette, stable across every figure.
_REGISTRY = (
    Method(
        "prompt",
        "prompt tuning",
        "module",
        "CoOp: learn the shared context, class-name tokens fixed",
        module="prompt",
        options={"learn": "ctx"},
        color="#0173b2",
        losses={"gce": "#56b4e9", "sce": None, "nce_rce": None},
        check=_prompt_needs_context,
    ),
    Method(
        "cls_tuning",
        "CLS-Tuning",
        "module",
        "learn the class-name token embeddings, context fixed (Table 2)",
        module="prompt",
        options={"learn": "cls"},
        color="#029e73",
    ),
    Method(
        "full_prompt",
        "Full-Prompt-Tuning",
        "module",
        "learn context and class-name tokens (Table 2)",
        module="prompt",
        options={"learn": "full"},
        color="#fbafe4",
    ),
    Method(
        "classifier_r",
        "Classifier-R",
        "module",
        "linear head on image features, random init (Table 1)",
        module="linear_head",
        options={"init": "random", "normalize_weight": True},
        color="#cc78bc",
        losses={"gce": None},
    ),
    Method(
        "classifier_r_free",
        "Classifier-R (free-norm rows)",
        "module",
        'Classifier-R with free-norm rows: "learned without constraints", read literally',
        module="linear_head",
        options={"init": "random", "normalize_weight": False},
        color="#8c4f80",
    ),
    Method(
        "classifier_c",
        "Classifier-C",
        "module",
        "linear head initialised from the hand-crafted prompt's text embeddings",
        module="linear_head",
        options={"init": "clip"},
        color="#ca9161",
    ),
    Method(
        "tenc_ft",
        "TEnc-FT",
        "module",
        "fine-tune the text encoder on the hand-crafted prompts",
        module="tenc_ft",
        color="#949494",
    ),
    Method(
        "linear_probe",
        "linear probe",
        "linear_probe",
        "sklearn L-BFGS logistic regression on image features (Figure 1/2)",
        color="#de8f05",
        losses={"gce": "#ece133"},
        # One centre-crop feature per image, as CLIP's and CoOp's linear probes are fitted.
        feature_mode="center",
    ),
    Method(
        "visual_ft",
        "visual fine-tuning",
        "visual_ft",
        "fine-tune the image tower (Figure 1)",
        color="#d55e00",
        feature_mode="exact",
        check=_visual_ft_needs_images,
    ),
    Method(
        "zeroshot",
        "zero-shot",
        "untrained",
        "hand-crafted prompt, no training",
        module="zeroshot",
        color="#000000",
    ),
    Method(
        "random_prompt",
        "random prompt",
        "untrained",
        "CoOp prompt with random (untrained) context",
        module="prompt",
        options={"learn": "ctx"},
        color="#7f7f7f",
    ),
    Method(
        "nlprompt_mae",
        "PromptMAE",
        "nlprompt",
        "NLPrompt (Pan et al. 2025) without OT: CoOp trained with MAE (1 - p_y) on every sample",
        module="prompt",
        options={"learn": "ctx"},
        color="#8de5a1",
        recipe={"ot": False},
        check=_recipe_owns_the_loss,
    ),
    Method(
        "nlprompt",
        "NLPrompt",
        "nlprompt",
        "NLPrompt: OT purification each epoch, CE on the clean part, MAE on the noisy part",
        module="prompt",
        options={"learn": "ctx"},
        color="#d62728",
        recipe={"ot": True, "noisy_loss": "mae", "reg": 0.01},
        check=_recipe_owns_the_loss,
    ),
    Method(
        "nlprompt_ot_ce",
        "PromptOT + CE",
        "nlprompt",
        "NLPrompt's OT purification each epoch, CE on the clean part only",
        module="prompt",
        options={"learn": "ctx"},
        color="#ff9f9b",
        recipe={"ot": True, "noisy_loss": None, "reg": 0.01},
        check=_recipe_owns_the_loss,
    ),
    Method(
        "joapr",
        "JoAPR",
        "joapr",
        "JoAPR (Guo & Gu 2024): GMM clean/noisy partition each epoch, label refurbishment",
        module="prompt",
        options={"learn": "ctx"},
        color="#17becf",
        # configs/trainers/JoAPR/rn50.yaml and train.py's defaults (TEMP 2, BETA 0.001, ALPHA1 0.5,
        # ALPHA2 0.5, WARMUP_EPOCH 1); its README tunes warm-up and alphas per dataset.
        recipe={"warmup": 1, "alpha1": 0.5, "alpha2": 0.5, "temperature": 2.0, "beta": 0.001},
        check=_recipe_owns_the_loss,
    ),
    Method(
        "select_zeroshot",
        "selectors on zero-shot CLIP",
        "selectors",
        "small-loss, GMM, OT and agreement selectors scored from zero-shot CLIP's probabilities",
        module="zeroshot",
        color="#404040",
        recipe={"scores": "zeroshot"},
        check=_scores_need_features,
    ),
    Method(
        "select_prompt",
        "selectors on the CoOp prompt",
        "selectors",
        "the same selectors scored from the CoOp prompt trained on the noisy labels",
        module="prompt",
        options={"learn": "ctx"},
        color="#3b75af",
        recipe={"scores": "prompt"},
        check=_scores_need_features,
    ),
    Method(
        "upl",
        "UPL",
        "upl",
        "Huang et al. 2022: per pseudo-class the K most confident images, CE",
        options={"selection": "topk", "loss": "ce"},
        color="#de8f05",
    ),
    Method(
        "robust_upl_ce",
        "Robust UPL (CE)",
        "upl",
        "the paper: per pseudo-class K images drawn at random, CE",
        options={"selection": "random", "loss": "ce"},
        color="#56b4e9",
    ),
    Method(
        "robust_upl_gce",
        "Robust UPL (GCE)",
        "upl",
        "the paper: per pseudo-class K images drawn at random, GCE (q = 0.5)",
        options={"selection": "random", "loss": "gce"},
        color="#0173b2",
    ),
)

METHODS: Mapping[str, Method] = MappingProxyType({m.name: m for m in _REGISTRY})
RUN_METHODS = tuple(n for n, m in METHODS.items() if m.trainer != "upl")  # what RunConfig.method takes
PROMPT_METHODS = tuple(n for n in RUN_METHODS if METHODS[n].groupable)
UNTRAINED_METHODS = tuple(n for n in RUN_METHODS if not METHODS[n].uses_labels)
UPL_METHODS = tuple(n for n, m in METHODS.items() if m.trainer == "upl")


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def variant(method: str, loss: str = "ce") -> str:
    """The name of a (method, loss) pair in tables and figures: ``prompt``, ``prompt_gce``, ..."""
    return method if loss == "ce" else f"{method}_{loss}"


def _variants() -> tuple[dict[str, str], dict[str, str]]:
    labels, colors = {}, {}
    for m in _REGISTRY:
        labels[m.name] = m.label
        if m.color is not None:
            colors[m.name] = m.color
        for loss, color in m.losses.items():
            labels[variant(m.name, loss)] = f"{m.label} ({LOSS_LABELS[loss]})"
            if color is not None:
                colors[variant(m.name, loss)] = color
    return labels, colors


VARIANT_LABELS, VARIANT_COLORS = _variants()


def label(variant_name: str) -> str:
    """How tables and figures name a variant (the name itself where none is declared)."""
    return VARIANT_LABELS.get(variant_name, variant_name)
