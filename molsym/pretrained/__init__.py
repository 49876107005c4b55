"""Pretrained models shipped inside the package, by name.

``molsym predict --model qm9 ...`` and ``load_model("qm9")``-style calls resolve a name here
to a deploy file under this folder. The registry is plain data; each entry says what the model
was trained on so that ``molsym predict`` can say so, and where its numbers are documented.
"""

from __future__ import annotations

from pathlib import Path

from molsym.errors import ConfigError

_HERE = Path(__file__).resolve().parent

#: name -> file (relative to this folder) and a one-line description of what it covers.
PRETRAINED: dict[str, dict[str, str]] = {
    "qm9": {
        "file": "qm9.pt",
        "description": (
            "QM9 (B3LYP/6-31G(2df,p)): U0 energy, HOMO, LUMO, gap, dipole moment; "
            "elements H, C, N, O, F; molecules with <= 9 heavy atoms"
        ),
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


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A deploy file path as given (when it exists) or the file of a bundled pretrained model."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if str(name_or_path) in PRETRAINED:
        return pretrained_path(str(name_or_path))
    raise ConfigError(
        f"model {str(name_or_path)!r} is neither a model file nor a pretrained model name "
        f"(pretrained: {sorted(PRETRAINED)})"
    )
