"""One module per paper section (one per notebook): its parameters, run grid and claims.

Each section module has a grid function (the notebook's parameters in, its runs out), its claims
and a ``SECTION`` (``ptnl.sections.common.Section``); ``SECTIONS`` maps each notebook's file stem
to it, and ``build(section_or_stem, params)`` gives the runs the run store will hold for a dict of
notebook parameters (names the section does not take are ignored). Shared pieces are in
``ptnl.sections.common``; ``ptnl.tools.plan`` counts what every notebook of a parameter set
will run.
"""

from ptnl.sections import (
    appendix,
    architectures,
    attribution,
    beyond,
    correlated,
    gce,
    gradients,
    lab,
    quickstart,
    robustness,
    unsupervised,
)
from ptnl.sections.common import Section

SECTIONS: dict[str, Section] = {
    m.SECTION.stem: m.SECTION
    for m in (
        quickstart,
        gce,
        robustness,
        attribution,
        gradients,
        architectures,
        correlated,
        unsupervised,
        appendix,
        lab,
        beyond,
    )
}


def build(section: Section | str, params: dict) -> list:
    """``section``'s (a ``Section`` or a notebook stem) stored runs from a dict of notebook parameters.

    Section 5 (notebook 07) gives its zero-shot runs and then every UPL ensemble member (ordinary
    ``RunConfig``s on the pseudo-label kinds)."""
    return (section if isinstance(section, Section) else SECTIONS[section]).build(params)


__all__ = ["SECTIONS", "Section", "build"]
