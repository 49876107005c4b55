"""``molsym train [overrides]``: a Hydra app around :func:`molsym.training.run.train`.

Configs ship inside the package (``molsym/configs``), so editable and wheel installs find
them alike. Bad configs and bad data end in one line on stderr and exit status 2 (config)
or 1 (data/run), not in a stack of Hydra internals.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIG_NAME = "train"
#: Hydra flags after which no pre-check is done (help and inspection).
_INSPECT_FLAGS = {"-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-p",
                  "--package", "--shell-completion", "-sc", "--resolve"}


def _error(message: str, status: int) -> int:
    print(f"molsym train: error: {message}", file=sys.stderr)
    return status


def _first_line(exc: BaseException) -> str:
    text = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return "; ".join(text[:2]) if text else type(exc).__name__


def precheck(overrides: list[str], config_name: str = CONFIG_NAME) -> str | None:
    """Compose (and resolve) the config ``config_name`` once; a message for the first
    problem, else None.

    Sweep overrides (``a=1,2``) are checked with their first value.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from molsym.data.recipes import register_resolvers

    register_resolvers()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # noqa: BLE001 - hydra's parse errors have several types
        return f"cannot parse overrides: {_first_line(exc)}"
    plain = []
    for override, text in zip(parsed, overrides, strict=True):
        if override.key_or_group.startswith("hydra"):
            continue
        if override.is_sweep_override():
            first = next(iter(override.sweep_string_iterator()), None)
            if first is None:
                continue
            text = f"{override.get_key_element()}={first}"
        plain.append(text)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=plain)
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as exc:  # noqa: BLE001 - composition/interpolation errors, one line
        return _describe(exc)
    return None


def _describe(exc: BaseException) -> str:
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(exc, MissingMandatoryValue):
        key = getattr(exc, "full_key", "") or "?"
        return f"missing required value {key}: set it on the command line ({key}=...)"
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    message = lines[0] if lines else type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        message = f"{message.rstrip('.')}: {str(cause).strip().splitlines()[0]}"
    for k, line in enumerate(lines):
        if line.startswith("Available options in"):
            options = []
            for option in lines[k + 1:]:
                if option.endswith(":"):
                    break
                options.append(option)
            message += f" (choose from {', '.join(options)})"
            break
    if any(ln.startswith("To append to your config use +") for ln in lines):
        message += " (a new key needs a leading +, e.g. +key=value)"
    return message


def _make_app():
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    @hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
    def app(cfg: DictConfig) -> None:
        from molsym.errors import MolsymError
        from molsym.training.run import summary, train

        try:
            hydra_cfg = HydraConfig.get()
            result = train(cfg, hydra_cfg.runtime.output_dir, list(hydra_cfg.overrides.task))
        except MolsymError as exc:
            sys.exit(_error(str(exc), 2 if type(exc).__name__ == "ConfigError" else 1))
        except FileNotFoundError as exc:
            sys.exit(_error(str(exc), 1))
        if result["is_global_zero"]:
            print(summary(result))

    return app


def _resume_defaults(argv: list[str]) -> None:
    """A resume (``ckpt_path=DIR/checkpoints/last.ckpt``) writes into DIR unless
    ``hydra.run.dir`` says otherwise, and keeps the run's own ``.hydra/`` record (Hydra would
    rewrite it with this command line): its record goes to ``.hydra-resume/``."""
    ckpt = next((a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")), None)
    if not ckpt or ckpt == "null":
        return
    if not any(a.startswith("hydra.output_subdir=") for a in argv):
        argv.append("hydra.output_subdir=.hydra-resume")
    path = Path(ckpt.strip("'\"")).expanduser().resolve()
    run_dir = path.parent.parent
    if path.parent.name == "checkpoints" and (run_dir / "config.yaml").is_file() and not any(
            a.startswith("hydra.run.dir=") or a in ("-m", "--multirun") for a in argv):
        argv.append(f'hydra.run.dir="{run_dir}"')


def main(argv: list[str] | None = None) -> int:
    """Run ``molsym train``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a in _INSPECT_FLAGS or a.startswith("--config") or a in ("-cp", "-cn", "-cd")
               for a in argv):
        overrides = [a for a in argv if a not in ("-m", "--multirun")]
        message = precheck(overrides)
        if message is not None:
            return _error(message, 2)
    from molsym.data.recipes import register_resolvers

    register_resolvers()
    _resume_defaults(argv)
    # Lightning's DDP launcher restarts the other ranks as `python sys.argv[0] sys.argv[1:]`
    # (or `python -m <__main__ spec>`): point both at this file so that they run `train`.
    main_module = sys.modules.get("__main__")
    saved = sys.argv, getattr(main_module, "__spec__", None)
    sys.argv = [str(Path(__file__).resolve()), *argv]
    if main_module is not None:
        main_module.__spec__ = None
    try:
        _make_app()()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved[0]
        if main_module is not None:
            main_module.__spec__ = saved[1]
    return 0


if __name__ == "__main__":  # the DDP launcher's entry for ranks > 0
    sys.exit(main())
