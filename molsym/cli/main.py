"""``molsym <command> ...``: dispatch to train / eval / predict / export.

Each command lives in ``molsym.cli.<command>`` as ``main(argv) -> int``; a command whose
module is not in this installation says so instead of failing with a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from molsym import __version__

COMMANDS: dict[str, str] = {
    "train": "train a model (Hydra config; `molsym train --help` lists the groups)",
    "eval": "errors of a trained model on a labelled data file (table, JSON, parity plots)",
    "predict": "predict properties of molecules (SMILES, XYZ, SDF, ...) with a trained model",
    "convert": "structure files -> a sharded on-disk store for data sets larger than memory",
    "export": "export a trained model for deployment",
    "ensemble": "combine trained models into one committee (mean and spread)",
    "md": "molecular dynamics (NVE/NVT/NPT) with a trained model on a structure or SMILES",
    "learn": "active learning: SMILES + an oracle -> a committee potential and a report",
}

USAGE = "usage: molsym [--version] <command> [args]\n\ncommands:\n" + "".join(
    f"  {name:<9}{text}\n" for name, text in COMMANDS.items()
) + "\n`molsym <command> --help` describes a command."


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``molsym`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"molsym {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"molsym: error: unknown command {command!r}; choose from "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name = f"molsym.cli.{command}"
    if importlib.util.find_spec(module_name) is None:
        print(f"molsym: error: `molsym {command}` is not available yet in this installation",
              file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(module_name)
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:  # e.g. while the command imports torch
        print(f"molsym {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
