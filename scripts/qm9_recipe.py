"""How the bundled ``qm9`` model is made and measured (reproducible; needs qm9pack).

    python -m scripts.qm9_recipe data OUT --train 24000 --val 1000 --test 10000
    molsym train experiment=qm9 data.path=OUT/qm9_trainval.extxyz data.format=extxyz \
        data.test_path=OUT/qm9_test.extxyz ...            # see README "Pretrained QM9 model"
    python -m scripts.qm9_recipe evaluate RUN/model.pt OUT --smiles 1000

``data`` draws a seeded random sample of QM9 (qm9pack's 130,831 molecules, read by molsym's
QM9 reader) and writes train+val and test sets as extxyz with the targets in internal units
(eV, e*Angstrom), plus the test molecules' SMILES. ``evaluate`` gives the MAE per property on
the test set with the DFT geometries, and on a subset with geometries from SMILES (RDKit
ETKDG + MMFF, as ``molsym predict`` makes them) so the cost of not having a DFT geometry shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

#: Targets of the bundled model, as named by molsym's QM9 reader (energy = U0).
TARGETS = ["energy", "homo", "lumo", "gap", "dipole_moment"]
NUM_QM9 = 130_831


def make_data(out: Path, n_train: int, n_val: int, n_test: int, seed: int = 0) -> dict:
    """Write ``qm9_trainval.extxyz`` (training molecules, then validation ones),
    ``qm9_test.extxyz``, ``qm9_test.smi``, ``indices.json`` (0-based QM9 indices),
    ``trainval_split.json`` (positions in the trainval file, for ``data.split_file``) and
    ``qm9_split.json`` (QM9 molecule numbers, the ``Index`` column of qm9pack's CSVs, of
    ``train``, ``val`` and ``test``: the split shipped as ``molsym/pretrained/qm9_split.json``)
    under ``out``."""
    import ase.io

    from molsym.atomic import write_text_atomic
    from molsym.data.readers import read_file

    rng = np.random.default_rng(seed)
    n_total = n_train + n_val + n_test
    # Indices drawn from the rows qm9pack holds (some release indices are absent): draw a
    # little more than needed from 0..133884, keep what the reader returns.
    pool = rng.permutation(133_885)[: int(n_total * 1.05) + 100]
    mols = read_file("qm9pack", format="qm9", indices=sorted(pool.tolist()))
    by_index = {int(m.info["record"]): m for m in mols}
    order = [int(i) for i in pool if int(i) in by_index][:n_total]
    if len(order) < n_total:
        raise SystemExit(f"only {len(order)} molecules available, asked for {n_total}")
    out.mkdir(parents=True, exist_ok=True)
    sets = {"trainval": order[: n_train + n_val], "test": order[n_train + n_val:]}
    for name, idx in sets.items():
        frames = [_slim(by_index[i]) for i in idx]
        ase.io.write(out / f"qm9_{name}.extxyz", frames, format="extxyz")
    with open(out / "qm9_test.smi", "w") as fh:
        for i in sets["test"]:
            fh.write(f"{by_index[i].info['smiles']} {by_index[i].info['name']}\n")
    meta = {"seed": seed, "train": n_train, "val": n_val, "test": n_test,
            "indices": {k: v for k, v in sets.items()}}
    write_text_atomic(out / "indices.json", json.dumps(meta))
    positions = {"train": list(range(n_train)), "val": list(range(n_train, n_train + n_val)),
                 "test": []}
    write_text_atomic(out / "trainval_split.json", json.dumps(positions))
    numbers = {"train": [i + 1 for i in order[:n_train]],
               "val": [i + 1 for i in order[n_train:n_train + n_val]],
               "test": [i + 1 for i in sets["test"]], "seed": seed,
               "note": "QM9 molecule numbers (qm9pack 'Index' = gdb index)"}
    write_text_atomic(out / "qm9_split.json", json.dumps(numbers))
    return meta


def embed(out: Path, name: str, jobs: int = 1, chunk: int = 5000) -> dict:
    """RDKit ETKDG + MMFF geometries (``molsym predict``'s SMILES path) of every molecule of
    ``out/qm9_<name>.extxyz``, labelled with its QM9 properties: ``qm9_<name>_smiles.extxyz``
    plus ``qm9_<name>_smiles.json`` (the molecules that did not embed, with the reason, and
    for each embedded frame its position in the DFT file) and, when ``<name>_split.json``
    exists, ``<name>_smiles_split.json``: the same split as positions in the new file.
    Resumable: chunks are written atomically under ``smiles_chunks/`` and a rerun skips the
    finished ones."""
    import ase.io

    from molsym.atomic import atomic_path, write_text_atomic
    from molsym.inference.predictor import embed_smiles

    dft = ase.io.read(out / f"qm9_{name}.extxyz", index=":")
    folder = out / "smiles_chunks"
    folder.mkdir(exist_ok=True)
    for start in range(0, len(dft), chunk):
        geo, err = folder / f"{name}_{start:07d}.extxyz", folder / f"{name}_{start:07d}.json"
        if geo.is_file() and err.is_file():
            continue
        part = dft[start:start + chunk]
        entries = embed_smiles([m.info["smiles"] for m in part], f"qm9_{name}", jobs)
        frames, failed = [], {}
        for i, (mol, entry) in enumerate(zip(part, entries, strict=True)):
            if entry.error:
                failed[start + i] = entry.error
                continue
            atoms = entry.atoms
            labels = dict(mol.calc.results) if mol.calc is not None else {}  # energy = U0
            atoms.info = {**mol.info, **{k: v for k, v in labels.items() if k in TARGETS},
                          "dft_position": start + i}
            frames.append(atoms)
        with atomic_path(geo) as tmp:
            ase.io.write(tmp, frames, format="extxyz")
        write_text_atomic(err, json.dumps(failed))
        print(f"{name}: {start + len(part)}/{len(dft)} embedded ({len(failed)} failed)",
              flush=True)
    frames, failed = [], {}
    for start in range(0, len(dft), chunk):
        frames += ase.io.read(folder / f"{name}_{start:07d}.extxyz", index=":")
        failed.update(json.loads((folder / f"{name}_{start:07d}.json").read_text()))
    with atomic_path(out / f"qm9_{name}_smiles.extxyz") as tmp:
        ase.io.write(tmp, frames, format="extxyz")
    report = {"molecules": len(dft), "embedded": len(frames), "failed": failed,
              "dft_position": [int(a.info["dft_position"]) for a in frames]}
    write_text_atomic(out / f"qm9_{name}_smiles.json", json.dumps(report))
    split = out / f"{name}_split.json"  # the DFT file's split, as positions in the new file
    if split.is_file():
        given = json.loads(split.read_text())
        where = {"train": set(given["train"]), "val": set(given["val"])}
        positions = {k: [i for i, p in enumerate(report["dft_position"]) if p in v]
                     for k, v in where.items()}
        write_text_atomic(out / f"{name}_smiles_split.json", json.dumps({**positions,
                                                                         "test": []}))
    return report


def ship(model: Path, dest: Path, root: Path) -> Path:
    """Copy a trained deploy file to ``dest`` with the paths in its metadata written relative
    to ``root`` (the checkout), so no machine's folders ship with the package."""
    import torch

    from molsym.atomic import atomic_path

    payload = torch.load(model, map_location="cpu", weights_only=True)
    prefix = str(root.resolve()).rstrip("/") + "/"
    payload["metadata"] = json.loads(json.dumps(payload["metadata"]).replace(prefix, ""))
    with atomic_path(dest) as tmp:
        torch.save(payload, tmp)
    return dest


def _slim(atoms):
    """Structure, name, SMILES and the targets only (keeps the files small)."""
    import ase

    slim = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions)
    slim.info = {k: atoms.info[k] for k in ("name", "smiles", *TARGETS) if k in atoms.info}
    return slim


def _mae(pred: np.ndarray, ref: np.ndarray) -> float:
    ok = np.isfinite(pred)
    return float(np.mean(np.abs(pred[ok] - ref[ok])))


def evaluate(model: str, out: Path, n_smiles: int, jobs: int = 2) -> dict:
    """MAE per property on the test set (DFT geometries) and on its first ``n_smiles``
    molecules with RDKit/MMFF geometries from their SMILES (same model, same labels)."""
    from molsym import units
    from molsym.data.readers import read_file
    from molsym.inference.predictor import Entry, Predictor, property_column

    predictor = Predictor(model)
    test = read_file(out / "qm9_test.extxyz")
    cols = {t: property_column(t, predictor.outputs) for t in TARGETS}
    factor = {t: (units.DEBYE if t == "dipole_moment" else 1.0) for t in TARGETS}
    refs = {t: np.array([m.info[t] for m in test]) / factor[t] for t in TARGETS}
    t0 = time.perf_counter()
    dft = predictor.table(predictor.run([Entry.from_atoms(m) for m in test]))
    t_dft = time.perf_counter() - t0
    subset = test[:n_smiles]
    entries = _smiles_entries(out, [m.info["smiles"] for m in subset], jobs)
    smi = predictor.table(predictor.run(entries))
    result = {"n_test": len(test), "n_smiles": len(subset),
              "smiles_failed": int((smi["error"] != "").sum()), "seconds_dft": t_dft,
              "mae": {}}
    embedded = (smi["error"] == "").to_numpy()  # compare on the same molecules
    for t in TARGETS:
        col, ref = cols[t], refs[t][: len(subset)]
        result["mae"][t] = {
            "unit": col.rsplit("_", 1)[-1],
            "dft_geometry": _mae(dft[col].to_numpy(float), refs[t]),
            "dft_geometry_subset": _mae(dft[col].to_numpy(float)[: len(subset)][embedded],
                                        ref[embedded]),
            "smiles_geometry_subset": _mae(smi[col].to_numpy(float)[embedded], ref[embedded]),
        }
    return result


def _smiles_entries(out: Path, smiles: list[str], jobs: int) -> list:
    """Embedded test SMILES, cached in ``out/qm9_test_smiles.extxyz`` (+ ``.errors.json``) so
    that re-evaluating a model does not embed again."""
    import ase.io

    from molsym.inference.predictor import Entry, embed_smiles

    geo, err = out / "qm9_test_smiles.extxyz", out / "qm9_test_smiles.errors.json"
    if geo.is_file() and err.is_file():
        errors = {int(k): v for k, v in json.loads(err.read_text()).items()}
        frames = iter(ase.io.read(geo, index=":"))
        entries = [Entry("qm9_test", i, None, s, f"qm9_test:{i}", errors[i]) if i in errors
                   else Entry("qm9_test", i, next(frames), s, f"qm9_test:{i}")
                   for i, s in enumerate(smiles)]
        if len(entries) == len(smiles):
            return entries
    entries = embed_smiles(smiles, "qm9_test", jobs)
    ase.io.write(geo, [e.atoms for e in entries if e.atoms is not None], format="extxyz")
    err.write_text(json.dumps({e.index: e.error for e in entries if e.error}))
    return entries


def markdown(result: dict) -> str:
    """The evaluation as a Markdown table (energies in meV, dipole in D)."""
    n_ok = result["n_smiles"] - result["smiles_failed"]
    lines = [f"| property | MAE, DFT geometry ({result['n_test']} test molecules) | "
             f"MAE, DFT geometry ({n_ok} embedded of the first {result['n_smiles']}) | MAE, "
             f"RDKit/MMFF geometry from SMILES (same {n_ok}) |", "|---|---:|---:|---:|"]
    for t, m in result["mae"].items():
        scale, unit = (1000.0, "meV") if m["unit"] == "eV" else (1.0, m["unit"])
        lines.append(f"| {t} ({unit}) | {m['dft_geometry'] * scale:.3g} | "
                     f"{m['dft_geometry_subset'] * scale:.3g} | "
                     f"{m['smiles_geometry_subset'] * scale:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.qm9_recipe")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="write the QM9 sample as extxyz")
    d.add_argument("out", type=Path)
    d.add_argument("--train", type=int, default=24_000)
    d.add_argument("--val", type=int, default=1_000)
    d.add_argument("--test", type=int, default=10_000)
    d.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("embed", help="RDKit/MMFF geometries of a set's SMILES, labelled")
    m.add_argument("out", type=Path)
    m.add_argument("--set", default="trainval", help="trainval or test")
    m.add_argument("--jobs", type=int, default=1)
    s = sub.add_parser("ship", help="copy a trained model into the package, paths relative")
    s.add_argument("model", type=Path)
    s.add_argument("dest", type=Path)
    e = sub.add_parser("evaluate", help="MAE per property on the test set")
    e.add_argument("model")
    e.add_argument("out", type=Path)
    e.add_argument("--smiles", type=int, default=1000, help="molecules embedded from SMILES")
    e.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    if args.cmd == "data":
        meta = make_data(args.out, args.train, args.val, args.test, args.seed)
        print(json.dumps({k: v for k, v in meta.items() if k != "indices"}))
        return 0
    if args.cmd == "ship":
        print(ship(args.model, args.dest, Path.cwd()))
        return 0
    if args.cmd == "embed":
        report = embed(args.out, args.set, args.jobs)
        print(json.dumps({"molecules": report["molecules"], "embedded": report["embedded"],
                          "failed": len(report["failed"])}))
        return 0
    result = evaluate(args.model, args.out, args.smiles, args.jobs)
    (args.out / "evaluation.json").write_text(json.dumps(result, indent=1))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
