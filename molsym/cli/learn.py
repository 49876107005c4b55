"""``molsym learn smiles=... [overrides]``: a Hydra app around :class:`molsym.learning.Loop`.

The config is ``configs/learn.yaml``: ``train.yaml`` (model, optimizer, trainer, ... as in
``molsym train``) plus the groups ``oracle`` and the loop's ``learn`` keys. The run folder is
``hydra.run.dir``; the same command with the same folder resumes a killed run. Bad input ends
in one line on stderr: exit status 2 for a bad config, 1 for bad data or a failing oracle.
"""

from __future__ import annotations

import logging
import sys

from molsym.cli.train import _INSPECT_FLAGS, CONFIG_DIR, precheck

CONFIG_NAME = "learn"


def _error(message: str, status: int) -> int:
    print(f"molsym learn: error: {message}", file=sys.stderr)
    return status


def quote_smiles(argv: list[str]) -> list[str]:
    """``smiles=CC(=O)O`` as Hydra needs it (``smiles='CC(=O)O'``): parentheses, ``=``,
    ``#``, ``[...]`` and commas of SMILES are Hydra grammar. A value already in quotes is
    left as it is; several SMILES are one comma-separated value (``smiles=CCO,CC(=O)O``)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+") == "smiles" and value and value[0] not in "'\"":
            value = value.replace("'", "\\'")
            if value.endswith("\\"):
                value += "\\"
            arg = f"{key}='{value}'"
        out.append(arg)
    return out


def _make_app():
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
    def app(cfg: DictConfig) -> None:
        from molsym.errors import ConfigError, MolsymError
        from molsym.learning import Loop
        from molsym.learning.progress import show_warnings_once
        from molsym.training.logs import LIGHTNING_LOGGERS, quiet_lightning

        quiet_lightning()
        show_warnings_once()
        for name in LIGHTNING_LOGGERS:  # "`Trainer.fit` stopped" K times a round
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            result = Loop(cfg, HydraConfig.get().runtime.output_dir).run()
        except ConfigError as exc:
            sys.exit(_error(str(exc), 2))
        except (MolsymError, FileNotFoundError) as exc:
            sys.exit(_error(str(exc), 1))
        print(f"model: {result['model']}\nreport: {result['report']}\n"
              f"{result['labels']} labels in {result['rounds']} round(s); {result['stop']}")

    return app


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym learn``; returns the exit status."""
    argv = quote_smiles(list(sys.argv[1:] if argv is None else argv))
    from molsym.learning.run_name import register

    register()
    if not any(a in _INSPECT_FLAGS or a.startswith("--config") for a in argv):
        message = precheck([a for a in argv if a not in ("-m", "--multirun")], CONFIG_NAME)
        if message is not None:
            return _error(message, 2)
    from molsym.data.recipes import register_resolvers

    register_resolvers()
    saved = sys.argv
    sys.argv = [saved[0], *argv]
    try:
        _make_app()()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    sys.exit(main())
