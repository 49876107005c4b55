"""Pretrained models shipped inside the package, by name.

``molsym predict --model qm9 ...`` and ``load_model("qm9")``-style calls resolve a name here
to a deploy file under this folder. The registry is plain data; each entry says what the model
was trained on so that ``molsym predict`` can say so, and where its numbers are documented.
"""

from __future__ import annotations

from pathlib import Path

from molsym.errors import ConfigError

_HERE = Path(__file__).resolve().parent

_QM9 = ("QM9 (B3LYP/6-31G(2df,p)): U0 energy, HOMO, LUMO, gap, dipole moment; elements H, C, "
        "N, O, F; molecules with <= 9 heavy atoms")

#: name -> file (relative to this folder) and a one-line description of what it covers; an
#: entry with ``smiles_file`` uses that model for SMILES inputs (geometries from RDKit ETKDG +
#: MMFF, what it was trained on) and ``file`` for structures given with their coordinates.
PRETRAINED: dict[str, dict[str, str]] = {
    "qm9": {
        "file": "qm9.pt",
        "smiles_file": "qm9_smiles.pt",
        "description": _QM9 + "; SMILES through qm9-smiles, structure files through qm9-dft",
    },
    "qm9-dft": {"file": "qm9.pt", "description": _QM9 + "; trained on the DFT geometries"},
    "qm9-smiles": {
        "file": "qm9_smiles.pt",
        "description": _QM9 + "; trained on RDKit ETKDG + MMFF geometries of the SMILES",
    },
}


def available() -> list[str]:
    """Names of the pretrained models whose file is present in this installation."""
    return sorted(name for name, entry in PRETRAINED.items() if (_HERE / entry["file"]).is_file())


def pretrained_path(name: str) -> Path:
    """Path of the bundled deploy file of ``name``; :class:`ConfigError` if unknown or missing."""
    entry = PRETRAINED.get(name)
    if entry is None:
        raise ConfigError(f"unknown pretrained model {name!r}; known: {sorted(PRETRAINED)}")
    path = _HERE / entry["file"]
    if not path.is_file():
        raise ConfigError(f"pretrained model {name!r} is not installed (expected {path})")
    return path


def smiles_model_path(name: str) -> Path | None:
    """The file a pretrained model ``name`` uses for SMILES inputs, when it has its own."""
    entry = PRETRAINED.get(str(name), {})
    path = _HERE / entry["smiles_file"] if "smiles_file" in entry else None
    return path if path is not None and path.is_file() else None


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A deploy file path as given (when it exists) or the file of a bundled pretrained model."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if str(name_or_path) in PRETRAINED:
        return pretrained_path(str(name_or_path))
    raise ConfigError(
        f"model {str(name_or_path)!r} not found: neither a model file nor a pretrained model name "
        f"(pretrained: {sorted(PRETRAINED)})"
    )
