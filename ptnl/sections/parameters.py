"""Notebook parameters, each declared once: name, default, the comment its notebook shows, and the
types a value may have.

``SHARED`` declares the parameters the notebooks share (backbone, pretrained, datasets,
noise_rates, seeds, epochs, shots, device, group_size, workers, feature_mode, experiment,
save_figures, ...) with their usual default and comment. Each section module picks its notebook's
parameters from them in the order of the notebook's ``parameters`` cell, adding its own and
overriding a shared one's default or comment where its notebook differs
(``SHARED.pick("backbone", SHARED["seeds"].but(default=[1, 2]), Parameter("qs", [0.5, 1.0]))``),
and hands them to its ``Section``. From that one declaration come

- the notebook's ``parameters`` cell (``Parameters.cell_source``; ``python -m ptnl notebooks
  params`` writes the committed cells, ``--check`` and the tests hold them equal to it),
- the checks of parameter sets, overrides and papermill's injected values (``ptnl.tools.notebooks``:
  names, and types read off the declaration),
- and the dict of values a notebook hands to its grid (``check_parameters`` returns it,
  ``Section.runs(params)`` takes it).

A value's types come from its default: a bool default takes only booleans, an int default integers
(not booleans), a float default any number, a string, list or mapping default one of those; a
default of None takes anything unless ``types`` says otherwise. ``pretrained`` is free: a tag, a
file, null or a mapping ``{backbone: file}``.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

NONE = type(None)
PRETRAINED_TYPES = (str, dict, NONE)  # "default", a tag, a file, null (random weights), {backbone: file}


def literal(value) -> str:
    """``value`` as the parameters cell writes it: a Python literal with double-quoted strings
    (papermill's own style for the values it injects), lists in brackets, mappings in braces."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a parameter's default must be a finite number, got {value!r}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a Python string literal
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(
        f"a parameter's default must be None, a bool, a number, a string, a list or a mapping, got {value!r}"
    )


def default_types(default) -> tuple[type, ...]:
    """The types a value of a parameter with this default may have (empty: any)."""
    if default is None:
        return ()
    if type(default) is float:
        return (int, float)
    return (type(default),)


def accepts(allowed: tuple[type, ...], value) -> bool:
    """Whether ``value`` is one of ``allowed`` (empty: anything); a bool is no integer or number."""
    if not allowed:
        return True
    return isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)


@dataclass(frozen=True)
class Parameter:
    """One notebook parameter: its line in the ``parameters`` cell is ``name = default  # comment``
    (the comment on a line of its own above it with ``comment_above``). ``types``: the types a
    value may have, None for the default's (``default_types``), () for any. ``source``: the default
    as written where it is an expression, not a literal (only a notebook's own cell has those,
    ``ptnl.tools.notebooks.cell_parameters``)."""

    name: str
    default: object
    comment: str = ""
    types: tuple[type, ...] | None = None
    comment_above: bool = False
    source: str = ""

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"parameter name {self.name!r} is not a Python identifier")
        if not self.source:
            literal(self.default)  # a default the cell can write
            if not accepts(self.allowed, self.default):
                raise ValueError(
                    f"parameter {self.name!r}: default {self.default!r} is not one of {self.allowed}"
                )

    @property
    def allowed(self) -> tuple[type, ...]:
        """The types a value may have; empty: any."""
        return default_types(self.default) if self.types is None else tuple(self.types)

    def accepts(self, value) -> bool:
        return accepts(self.allowed, value)

    def but(self, **changes) -> Parameter:
        """This parameter with another default or comment (what a section overrides)."""
        return replace(self, **changes)

    def line(self) -> str:
        """Its line (or two, with ``comment_above``) in the parameters cell."""
        text = f"{self.name} = {self.source or literal(self.default)}"
        if not self.comment:
            return text
        return f"# {self.comment}\n{text}" if self.comment_above else f"{text}  # {self.comment}"


class Parameters(Mapping[str, Parameter]):
    """A notebook's parameters, name -> ``Parameter``, in the order of its parameters cell."""

    def __init__(self, params: Iterable[Parameter] = ()):
        self._params: dict[str, Parameter] = {}
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"not a Parameter: {p!r}")
            if p.name in self._params:
                raise ValueError(f"parameter {p.name!r} declared twice")
            self._params[p.name] = p

    def __getitem__(self, name: str) -> Parameter:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __repr__(self) -> str:
        return f"Parameters({', '.join(self._params)})"

    def defaults(self) -> dict:
        """Every parameter's default (copies: a caller may change them)."""
        return {name: copy.deepcopy(p.default) for name, p in self._params.items()}

    def cell_source(self) -> str:
        """The notebook's ``parameters`` cell: one line per parameter, in order."""
        return "\n".join(p.line() for p in self._params.values())

    def pick(self, *items: str | Parameter) -> Parameters:
        """A notebook's parameters, in its cell's order: each item the name of one of these (as
        declared here), or a ``Parameter``: the notebook's own, or one of these with another
        default or comment (``SHARED["seeds"].but(default=[1])``; its types stay the shared one's)."""
        out = []
        for item in items:
            if isinstance(item, str):
                if item not in self._params:
                    raise KeyError(f"no shared parameter {item!r}; shared: {', '.join(self._params)}")
                out.append(self._params[item])
                continue
            shared = self._params.get(item.name)
            if shared is not None and shared.allowed != item.allowed:
                raise ValueError(
                    f"parameter {item.name!r} is shared with types {shared.allowed}: override its default "
                    f"or comment with SHARED[{item.name!r}].but(...), not its types {item.allowed}"
                )
            out.append(item)
        return Parameters(out)


PRETRAINED_COMMENT = 'weights: "default" (the toy checkpoint; OpenAI\'s, or weights/<backbone>.pt), a file, or {backbone: file}'
WORKERS_COMMENT = "processes training runs side by side, each at this kernel's thread count (same numbers; the main job uses 2)"

# What the notebooks share, each with the default and comment most of them show.
SHARED = Parameters(
    [
        Parameter("backbone", "toy-rn"),
        Parameter("pretrained", "default", PRETRAINED_COMMENT, types=PRETRAINED_TYPES),
        Parameter("dataset", "toy-shapes"),
        Parameter("datasets", ["toy-shapes", "toy-fine"], "paper: OxfordPets, Food101, DTD, UCF101"),
        Parameter("noise_rates", [0.0, 0.125, 0.25, 0.5]),
        Parameter("noise_rate", 0.5),
        Parameter("seeds", [1, 2, 3]),
        Parameter("epochs", 50),
        Parameter("shots", 16),
        Parameter("device", "cpu"),
        Parameter("group_size", 8),
        Parameter("workers", 1, WORKERS_COMMENT),
        Parameter("feature_mode", "views"),
        Parameter("experiment", "toy"),
        Parameter("save_figures", True),
    ]
)
# The run settings most notebooks' cells end with, in this order: ``SHARED.pick(..., *RUN_SETTINGS)``.
RUN_SETTINGS = (
    "epochs",
    "shots",
    "device",
    "group_size",
    "workers",
    "feature_mode",
    "experiment",
    "save_figures",
)
