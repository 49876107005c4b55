"""``molsym convert INPUT... -o DIR``: structure files -> a sharded on-disk graph store.

Any format molsym reads (``.xyz .extxyz .sdf .mol .smi .csv .db .npz``, or ``--format``);
graphs are built once at ``--cutoff`` and written ``--frames-per-shard`` to an LMDB shard.
Rerunning the same command after an interruption resumes it. Train with
``molsym train data=store data.path=DIR`` (see docs/cluster.md).
"""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="molsym convert", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="structure files")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="store folder")
    parser.add_argument("--cutoff", type=float, default=5.0,
                        help="neighbour cutoff in Angstrom (must match training; default 5.0)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--format", default=None, help="reader format (default: extension)")
    parser.add_argument("--frames-per-shard", type=int, default=10_000)
    parser.add_argument("--energy-key", default=None, help="energy label name in the files")
    parser.add_argument("--forces-key", default=None, help="forces label name in the files")
    parser.add_argument("--reader-option", action="append", default=[], metavar="KEY=VALUE",
                        help="reader option, e.g. energy_unit=kcal/mol (repeatable)")
    parser.add_argument("--on-error", default="raise", choices=["raise", "skip"],
                        help="a bad record: stop, or skip it (listed in the manifest)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes building graphs (default: the usable cores)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a folder that holds another conversion")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym convert``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from molsym.data.convert import convert
    from molsym.errors import ConfigError, MolsymError

    options = {k: v for k, v in (("energy_key", args.energy_key),
                                 ("forces_key", args.forces_key)) if v is not None}
    for item in args.reader_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"molsym convert: error: --reader-option wants KEY=VALUE, got {item!r}",
                  file=sys.stderr)
            return 2
        options[key] = value
    try:
        manifest = convert(args.inputs, args.output, args.cutoff, dtype=args.dtype,
                           format=args.format, frames_per_shard=args.frames_per_shard,
                           reader_options=options, on_error=args.on_error,
                           num_workers=args.workers, overwrite=args.overwrite)
    except MolsymError as exc:
        print(f"molsym convert: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    skipped = sum(len(s.get("errors", [])) for s in manifest["shards"])
    print(f"{args.output}: {manifest['num_frames']} frames in {len(manifest['shards'])} "
          f"shards (cutoff {manifest['cutoff']} Angstrom, {manifest['dtype']})"
          + (f", {skipped} records skipped" if skipped else ""))
    return 0
