"""What every command line shares: one flag style (--snake_case, --dashed-names accepted too),
and a user's mistake reported as one short message with exit status 2 instead of a traceback."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Callable, Sequence

from convnext_jax.errors import UserError

USER_ERROR_EXIT = 2


def fail(message: str) -> None:
    """Print `error: message` and exit with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT)


def reports_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command's main: a UserError becomes `error: ...` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UserError as e:
            fail(str(e))

    return wrapper


def _underscored(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's flag style: options are --snake_case; --dashed-names work too."""

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_args([_underscored(a) for a in args], namespace)
