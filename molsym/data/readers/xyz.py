"""XYZ and extended XYZ (multi-frame) in.

Frames are split here, so that a bad frame is reported with its line and, with
``on_error="skip"``, the frames around it are kept. The common extxyz layout (``Properties``
with S/R/I columns) is parsed by a fast path; any other layout goes through ASE's own
extxyz reader. Both give identical ``ase.Atoms`` (tested). Labels (energy, forces, stress,
dipole, other numbers) come from the frame's info/arrays or calculator results and are
converted to internal units. A ``Lattice`` with ``pbc="F F F"`` stays non-periodic.
"""

from __future__ import annotations

import copy
import io
import os
import re
import warnings
from collections.abc import Iterator, Mapping

import ase
import numpy as np
from ase.data import atomic_numbers
from ase.io.extxyz import SPECIAL_3_3_KEYS, UNPROCESSED_KEYS, key_val_str_to_dict
from ase.stress import voigt_6_to_full_3x3_stress

from molsym.data.readers._common import check_on_error, convert_labels, handle, tag, validate
from molsym.errors import InputError
from molsym.units import to_internal

_PER_ATOM_RESULTS = {"forces", "stresses", "charges", "magmoms", "energies"}
_DEFAULT_PROPERTIES = "species:S:1:pos:R:3"
_SYMBOLS = {**atomic_numbers, **{str(z): z for z in range(1, 119)}}


class _Fallback(Exception):
    """The frame's layout is not one the fast path handles: use ASE."""


def _is_count_line(line: str) -> bool:
    parts = line.split()
    return len(parts) == 1 and parts[0].lstrip("+-").isdigit()


def _resync(lines: list[str], start: int) -> int:
    """Index of the next line at or after ``start`` that looks like an atom-count line."""
    for k in range(start, len(lines)):
        if _is_count_line(lines[k]):
            return k
    return len(lines)


def _split_frames(lines: list[str]) -> Iterator[tuple[int, int, list[str] | str]]:
    """Yield ``(frame, first line index, frame lines)`` or ``(frame, line index, error)``."""
    pos, frame, n = 0, 0, len(lines)
    while pos < n:
        if not lines[pos].strip():
            pos += 1
            continue
        if not _is_count_line(lines[pos]):
            yield frame, pos, f"line {pos + 1}: expected the number of atoms, got {lines[pos]!r}"
            pos, frame = _resync(lines, pos + 1), frame + 1
            continue
        natoms = int(lines[pos])
        end = pos + 2 + natoms
        if natoms <= 0:
            yield frame, pos, f"line {pos + 1}: frame declares {natoms} atoms"
            pos, frame = _resync(lines, pos + 1), frame + 1
            continue
        if end > n:
            have = max(0, n - pos - 2)
            yield frame, pos, f"line {pos + 1}: truncated frame ({have} of {natoms} atom lines)"
            return
        body = lines[pos + 2 : end]
        short = min(map(len, body)) < 12  # cheap filter: a count line inside the atom block
        bad = next((k for k, ln in enumerate(body) if _is_count_line(ln)), None) if short else None
        if bad is not None:
            yield frame, pos, (
                f"line {pos + 3 + bad}: fewer atom lines than the {natoms} declared on "
                f"line {pos + 1}"
            )
            pos, frame = pos + 2 + bad, frame + 1
            continue
        if end < n and len(lines[end].split()) == len(lines[end - 1].split()) > 1:
            yield frame, pos, (
                f"line {end + 1}: more atom lines than the {natoms} declared on line {pos + 1}"
            )
            pos, frame = _resync(lines, end), frame + 1
            continue
        yield frame, pos, lines[pos:end]
        pos, frame = end, frame + 1


def _parse_properties(spec: str) -> list[tuple[str, str, int]]:
    parts = spec.split(":")
    if len(parts) % 3:
        raise _Fallback
    props = [(parts[k], parts[k + 1], int(parts[k + 2])) for k in range(0, len(parts), 3)]
    if any(t not in "SRI" or len(t) != 1 for _, t, _ in props):
        raise _Fallback
    return props


def _symbols_to_numbers(col: np.ndarray, first_line: int) -> np.ndarray:
    try:
        return np.fromiter((_SYMBOLS[sym] for sym in col.tolist()), np.int64, len(col))
    except KeyError:
        k = next(i for i, sym in enumerate(col.tolist()) if sym not in _SYMBOLS)
        raise ValueError(f"line {first_line + k}: unknown element symbol {col[k]!r}") from None


_PAIR = re.compile(r'\s*([^\s="\'\[\]{}\\]+)=(?:"([^"\\]*)"|([^\s"\'\[\]{}\\]+))')
_CACHE: dict[tuple[str, str], object] = {}


def _convert_value(key: str, raw: str, quoted: bool):
    if not quoted and key not in SPECIAL_3_3_KEYS and key.lower() not in UNPROCESSED_KEYS:
        try:
            return np.int64(int(raw))
        except (ValueError, OverflowError):
            try:
                return np.float64(float(raw))
            except ValueError:
                pass
    value = _CACHE.get((key, raw))
    if value is None:
        value = key_val_str_to_dict(f'{key}="{raw}"')[key]
        if len(_CACHE) < 256:
            _CACHE[(key, raw)] = value
    return copy.deepcopy(value) if isinstance(value, (list, dict, np.ndarray)) else value


def parse_comment(comment: str) -> dict:
    """extxyz comment line to a dict, exactly as ``ase.io.extxyz.key_val_str_to_dict`` does
    (it is called for anything but plain ``key=value`` / ``key="..."`` pairs)."""
    out, pos, text = {}, 0, comment.strip()
    while pos < len(text):
        m = _PAIR.match(text, pos)
        if m is None:
            return key_val_str_to_dict(comment)
        key, quoted = m.group(1), m.group(2) is not None
        out[key] = _convert_value(key, m.group(2) if quoted else m.group(3), quoted)
        pos = m.end()
        if pos < len(text) and not text[pos].isspace():
            return key_val_str_to_dict(comment)
    return out


def _simple(props: list[tuple[str, str, int]]) -> bool:
    return props[0] == ("species", "S", 1) and all(t in "RI" for _, t, _ in props[1:])


def _fast_columns(body: list[str], props, ncols: int) -> dict | None:
    """Species first, numbers after: one C-level parse. None when the block is not clean."""
    try:
        heads, rest = zip(*(line.split(None, 1) for line in body), strict=True)
    except ValueError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values = np.fromstring(" ".join(rest), sep=" ")
        except ValueError:
            return None
    if values.size != len(body) * (ncols - 1):
        return None
    values = values.reshape(len(body), ncols - 1)
    try:
        arrays = {"numbers": np.fromiter((_SYMBOLS[h] for h in heads), np.int64, len(heads))}
    except KeyError:
        return None
    col = 0
    for name, kind, width in props[1:]:
        block = values[:, col : col + width]
        col += width
        if kind == "I":
            if not np.array_equal(block, np.round(block)):
                return None
            block = block.astype(np.int64)
        arrays[name] = block[:, 0].copy() if width == 1 else block.copy()
    return arrays


def _table_columns(body: list[str], props, ncols: int, first_line: int) -> dict:
    """General column parse with precise errors (line numbers)."""
    natoms = len(body)
    tokens = " ".join(body).split()
    if len(tokens) != natoms * ncols:
        for k, line in enumerate(body):
            if len(line.split()) != ncols:
                raise ValueError(f"line {first_line + 2 + k}: {len(line.split())} columns, "
                                 f"expected {ncols}")
    table = np.array(tokens).reshape(natoms, ncols)
    arrays, col = {}, 0
    for name, kind, width in props:
        block = table[:, col : col + width]
        col += width
        if kind == "S":
            if name != "species":
                raise _Fallback
            arrays["numbers"] = _symbols_to_numbers(block[:, 0], first_line + 2)
            continue
        try:
            values = block.astype(np.float64 if kind == "R" else np.int64)
        except ValueError:
            k = next(i for i, r in enumerate(block) if not _numeric(r, kind))
            raise ValueError(
                f"line {first_line + 2 + k}: non-numeric value in column {name!r}"
            ) from None
        arrays[name] = values[:, 0] if width == 1 else values
    return arrays


def _fast_frame(frame_lines: list[str], first_line: int) -> ase.Atoms:
    """Parse one frame of the common layout. Raises ValueError (bad data) or _Fallback."""
    comment = frame_lines[1]
    info = parse_comment(comment) if "=" in comment else {}
    if "=" not in comment and comment.strip():
        raise _Fallback  # free-text comment: keep ASE's interpretation
    props = _parse_properties(info.pop("Properties", _DEFAULT_PROPERTIES))
    names = [p[0] for p in props]
    if "pos" not in names or ("species" not in names and "Z" not in names):
        raise _Fallback
    ncols = sum(p[2] for p in props)
    arrays = _fast_columns(frame_lines[2:], props, ncols) if _simple(props) else None
    if arrays is None:
        arrays = _table_columns(frame_lines[2:], props, ncols, first_line)
    lattice = info.pop("Lattice", None)
    pbc = info.pop("pbc", lattice is not None)
    numbers = arrays.pop("numbers", None)
    numbers = arrays.pop("Z") if numbers is None else numbers
    atoms = ase.Atoms(numbers=numbers, positions=arrays.pop("pos"), cell=lattice, pbc=pbc)
    for name, values in arrays.items():
        atoms.arrays[name] = values
    atoms.info.update(info)
    return atoms


def _numeric(row, kind: str) -> bool:
    try:
        np.asarray(row).astype(np.float64 if kind == "R" else np.int64)
    except ValueError:
        return False
    return True


def _ase_frame(frame_lines: list[str], first_line: int) -> ase.Atoms:
    from ase.io import read

    try:
        return read(io.StringIO("\n".join(frame_lines) + "\n"), format="extxyz", index=0)
    except Exception as err:  # ASE raises many types on malformed text
        try:  # a precise message (with the line) when the fast parser can give one
            _fast_frame(frame_lines, first_line)
        except ValueError as precise:
            raise precise from None
        except Exception:
            pass
        raise ValueError(f"line {first_line}: ASE could not parse the frame: {err}") from None


def normalize_labels(
    atoms: ase.Atoms,
    energy_key: str = "energy",
    forces_key: str = "forces",
    units: Mapping[str, str] | None = None,
) -> ase.Atoms:
    """Move calculator results into info/arrays, rename ``energy_key``/``forces_key`` to
    ``energy``/``forces``, make ``stress`` (3, 3) and convert with ``units`` (key -> unit)."""
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    atoms.calc = None
    for key, value in results.items():
        if key in _PER_ATOM_RESULTS:
            atoms.arrays[key] = np.asarray(value)
        else:
            atoms.info[key] = value
    info, arrays = atoms.info, atoms.arrays
    if energy_key in info:
        info["energy"] = float(info.pop(energy_key))
    if forces_key in arrays:
        arrays["forces"] = np.asarray(arrays.pop(forces_key), dtype=np.float64)
    if "stress" in info:
        stress = np.asarray(info["stress"], dtype=np.float64)
        info["stress"] = voigt_6_to_full_3x3_stress(stress) if stress.size == 6 else (
            stress.reshape(3, 3)
        )
    if "dipole" in info:
        info["dipole"] = np.asarray(info["dipole"], dtype=np.float64).reshape(3)
    if units:
        info.update(convert_labels({k: info[k] for k in units if k in info}, units))
        for k in units:
            if k in arrays and k not in ("numbers", "positions"):
                arrays[k] = convert_labels({k: arrays[k]}, {k: units[k]})[k]
    return atoms


def parse_frame(frame_lines: list[str], first_line: int, fast: bool = True) -> ase.Atoms:
    """One frame (count line, comment, atom lines) to ``ase.Atoms`` (labels not normalised).
    ``first_line`` is the 1-based line number of the count line. Raises ValueError."""
    if fast:
        try:
            return _fast_frame(frame_lines, first_line)
        except _Fallback:
            pass
    return _ase_frame(frame_lines, first_line)


def read_xyz(
    path: str | os.PathLike,
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    energy_unit: str = "eV",
    forces_unit: str = "eV/Angstrom",
    label_units: Mapping[str, str] | None = None,
    fast: bool = True,
    on_error: str = "raise",
    errors: list | None = None,
) -> list[ase.Atoms]:
    """All frames of an XYZ/extXYZ file (``record`` = 0-based frame index).

    ``energy_key``/``forces_key`` name the labels in the file; ``energy_unit``/``forces_unit``
    and ``label_units`` (other key -> unit) give their units. ``fast=False`` forces ASE.
    """
    check_on_error(on_error, errors)
    source = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read file: {err}", source) from None
    if not any(line.strip() for line in lines):
        raise InputError("file is empty", source)
    units = {"energy": energy_unit, "forces": forces_unit, **(label_units or {})}
    units = {k: u for k, u in units.items() if to_internal(1.0, u) != 1.0}  # checks names
    out: list[ase.Atoms] = []
    for frame, start, body in _split_frames(lines):
        try:
            if isinstance(body, str):
                raise ValueError(body)
            atoms = parse_frame(body, start + 1, fast)
            normalize_labels(atoms, energy_key, forces_key, units)
            try:
                validate(atoms, source, frame, "frame")
            except InputError as err:
                raise ValueError(f"line {start + 1}: {err.reason}") from None
        except ValueError as err:
            handle(InputError(str(err), source, frame, "frame"), on_error, errors)
            continue
        out.append(tag(atoms, source, frame))
    return out
