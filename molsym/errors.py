"""Exceptions that name the file and the record, so a user can find the bad input."""

from __future__ import annotations


class MolsymError(Exception):
    """Base class of every error molsym raises on purpose."""


class InputError(MolsymError, ValueError):
    """Bad input data: names the source (file or "cli") and the record (line/frame/index).

    ``record`` is 1-based for lines of text files and 0-based for frames and molecules, as
    stated in ``record_kind``.
    """

    def __init__(
        self,
        message: str,
        source: str | None = None,
        record: int | str | None = None,
        record_kind: str = "record",
        *,
        smiles: str | None = None,
        name: str | None = None,
    ):
        self.source = source
        self.smiles = smiles  # the record's SMILES and name, when it has them
        self.name = name
        self.record = record
        self.record_kind = record_kind
        self.reason = message
        where = []
        if source is not None:
            where.append(str(source))
        if record is not None:
            where.append(f"{record_kind} {record}")
        prefix = ": ".join([", ".join(where)]) + ": " if where else ""
        super().__init__(prefix + message)


class ConfigError(MolsymError):
    """A configuration that cannot work (unknown key, missing file, uncovered elements)."""


class TrainingDiverged(MolsymError):
    """A run whose loss or weights stopped being finite; nothing is deployed."""
