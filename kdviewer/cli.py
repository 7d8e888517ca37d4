"""The `kdviewer` command: `kdviewer [PATH]` opens the viewer; subcommands do the rest headless.

Each subcommand lives in `kdviewer/commands/<name>.py` with `register(subparsers)`; those modules
import their heavy dependencies (Qt, torch, onnxruntime) inside `run`, so `kdviewer --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from kdviewer import __version__
from kdviewer.errors import KdviewerError

# Order is the order shown in --help.
COMMANDS = ("view", "info", "screenshot", "train", "distill", "ensemble", "export", "models", "infer", "evaluate",
            "compare", "seeds")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdviewer",
        description="Clinical image viewer with distilled models on the CPU. Research use only, not for diagnosis.",
    )
    parser.add_argument("--version", action="version", version=f"kdviewer {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"kdviewer.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("kdviewer.commands"):
                continue  # a command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad input, 1 other failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `kdviewer` and `kdviewer PATH` open the viewer.
    known = set(COMMANDS) | {"-h", "--help", "--version"}
    first = next((a for a in argv if a != "--debug"), None)
    if first is None or first not in known:
        argv = (["--debug"] if "--debug" in argv else []) + ["view"] + [a for a in argv if a != "--debug"]
    args = parser.parse_args(argv)
    debug = args.debug or bool(os.environ.get("KDVIEWER_DEBUG"))
    try:
        return int(args.func(args) or 0)
    except KdviewerError as exc:
        if debug:
            raise
        print(f"kdviewer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kdviewer {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # whoever read our output stopped (`kdviewer models | head -3`): stop quietly, as Unix tools do, and
        # point stdout at /dev/null so that the interpreter's final flush does not fail again
        _silence_stdout()
        return 1
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"kdviewer {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the user never sees a traceback
        if debug:
            raise
        if isinstance(exc, ModuleNotFoundError) and exc.name == "torch":
            print(f"kdviewer {args.command}: error: this command needs PyTorch, which the viewer's own install "
                  "leaves out: pip install -e '.[train]'", file=sys.stderr)
            return 2
        print(f"kdviewer {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for details)", file=sys.stderr)
        return 1


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # a stdout without a file descriptor (tests capture it)
        pass


if __name__ == "__main__":
    sys.exit(main())
