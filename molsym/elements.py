"""Which elements a model covers: the one check and the one message.

A model has parameters only for the elements it was trained on (``model.elements``); a
structure with any other element is refused, never predicted.
"""

from __future__ import annotations

from collections.abc import Iterable

from ase.data import chemical_symbols


def missing_elements(numbers: Iterable[int], known: Iterable[int]) -> list[int]:
    """Atomic numbers in ``numbers`` that are not in ``known``, sorted, each once."""
    return sorted({int(z) for z in numbers} - {int(z) for z in known})


def element_names(numbers: Iterable[int]) -> str:
    """``[1, 6]`` -> ``"H, C"``."""
    return ", ".join(chemical_symbols[int(z)] for z in numbers)


def not_covered(numbers: Iterable[int], known: Iterable[int]) -> str:
    """The one-line message for a structure with elements the model was not trained on
    (``""`` when it has none)."""
    known = sorted({int(z) for z in known})
    missing = missing_elements(numbers, known)
    if not missing:
        return ""
    return (f"element(s) {element_names(missing)} not covered by the model "
            f"(trained on {element_names(known)})")
