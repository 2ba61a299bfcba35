"""``lbi``: the project's command-line entry point.

Each subcommand lives in its own module that exposes ``add_parser(subparsers)``; the parser it adds
sets ``func`` (``args -> int`` exit code). Modules import heavy dependencies (torch, rclpy) inside
their functions, so ``lbi --help`` and ``lbi doctor`` stay fast and work without them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from lbi_ros import __version__

# Subcommand modules, in help order. Add a module here to add a command.
COMMAND_MODULES: tuple[str, ...] = (
    "lbi_ros.cli.doctor",
    "lbi_ros.cli.data",
    "lbi_ros.cli.bench",
    "lbi_ros.cli.train",
    "lbi_ros.cli.evaluate",
    "lbi_ros.cli.export",
    "lbi_ros.cli.engine",
    "lbi_ros.cli.detect",
    "lbi_ros.cli.features",
    "lbi_ros.cli.demo",
    "lbi_ros.cli.launch",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lbi", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lbi_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: surface it
                raise
            continue  # the command is not part of this build yet
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        logging.getLogger("lbi").error("%s", exc)
        if args.verbose:
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
