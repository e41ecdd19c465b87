"""The `scaling` command line: one sub-command per module of ``scaling.cli``.

Each sub-command lives in ``scaling/cli/<name>.py`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed args; its return value is the exit code).
Modules are imported lazily so that ``scaling --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import warnings

# Order shown in `scaling --help`.
COMMANDS = [
    "demo",
    "methods",
    "data",
    "plan",
    "train",
    "eval",
    "predict",
    "serve",
    "score",
    "sweep",
    "report",
    "convert",
    "inspect",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaling",
        description="Give frozen LLMs perception: train a tiny interface between a frozen encoder and a frozen LLM.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module_name = f"scaling.cli.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from scaling.config.base import ConfigError

    warnings.formatwarning = _one_line_warning
    try:
        code = args.func(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Our own warnings (UserWarning) print as ``warning: ...`` on their own line; others keep Python's format."""
    if category is UserWarning:
        return f"warning: {message}\n"
    return _DEFAULT_FORMAT(message, category, filename, lineno, line)


_DEFAULT_FORMAT = warnings.formatwarning


if __name__ == "__main__":
    sys.exit(main())
