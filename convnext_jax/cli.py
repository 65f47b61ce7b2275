"""What every command line shares: one flag style (--snake_case, --dashed-names accepted too),
and a user's mistake reported as one short message with exit status 2 instead of a traceback."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from convnext_jax.errors import ConfigError, UserError

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def fail(message: str) -> None:
    """Print `error: message` and exit with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT)


def reports_user_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command's main: a UserError becomes `error: ...` on stderr and exit status 2; Ctrl-C
    (where the command does not handle it itself) one line and exit status 130, no traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        plain_logging()
        try:
            return main(*args, **kwargs)
        except UserError as e:
            fail(str(e))
        except KeyboardInterrupt:
            print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
            sys.exit(INTERRUPTED_EXIT)

    return wrapper


class PlainFormatter(logging.Formatter):
    """Log records as the commands' own lines read: `warning: ...`, `error: ...`, plain INFO."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.levelno >= logging.ERROR:
            message += "\n" + self.formatException(record.exc_info)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def plain_logging() -> None:
    """One format for every warning a command prints (ours, absl's, orbax's, grain's): to stderr,
    `warning: message`, once, WARNING and above."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(PlainFormatter())
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


def _underscored(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    name, eq, value = arg.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help; descriptions keep their line breaks."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's flag style: options are --snake_case; --dashed-names work too;
    --help shows every default (subcommands' parsers too)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_args([_underscored(a) for a in args], namespace)


_PYTHON_WORDING = {
    r"invalid literal for int\(\) with base 10: (.*)": "an integer",
    r"could not convert string to float: (.*)": "a number",
}


def _override_type_error(message: str) -> str | None:
    """'flag --config.batch_size=abc: invalid literal for int() ...' -> 'batch_size must be an integer,
    got 'abc' (--config.batch_size=abc)'; None for other messages."""
    match = re.match(r"^flag --config\.([\w.]+)=(.*?): (.*)$", message)
    if not match:
        return None
    key, given, reason = match.groups()
    for pattern, wanted in _PYTHON_WORDING.items():
        if re.match(pattern, reason):
            return f"{key} must be {wanted}, got {given!r} (--config.{key}={given})"
    return None


def _config_file_error(text: str) -> str:
    """The user-facing part of config_flags' 'Error whilst parsing config file' (a traceback as text)."""
    lines = [line for line in text.splitlines() if line.strip()]
    for index in range(len(lines) - 1, -1, -1):
        match = re.match(r"^([\w.]+(?:Error|Exception)): (.*)$", lines[index])
        if match:
            return "\n".join([match.group(2)] + lines[index + 1 :])
    return lines[-1] if lines else text


HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull", "-help")


def config_flags_parser(
    schema_of: Callable[[], Any], command: str, subcommands: dict[str, str] | None = None
) -> Callable[[list[str]], list[str]]:
    """An absl `flags_parser` that reports the config's own errors (unknown keys with the closest
    name from `schema_of()`, bad values, a config file that fails) as one short message, and
    answers --help with the command's usage and flags, exit status 0 (absl's own exits 1).
    `subcommands`: {name: its help}, shown for `COMMAND NAME --help`."""
    return functools.partial(_parse_flags, schema_of=schema_of, command=command, subcommands=subcommands or {})


def print_help(command: str, subcommands: dict[str, str], argv: list[str]) -> None:
    """The usage of `command` (its module's docstring, or one subcommand's help) and its flags."""
    from absl import flags

    words = [a for a in argv[1:] if not a.startswith("-")]
    main = sys.modules.get("__main__")
    if words and words[0] in subcommands:
        print(f"{command} {words[0]}: {subcommands[words[0]]}\n")
    else:
        print((getattr(main, "__doc__", None) or command).strip() + "\n")
    module = getattr(main, "__spec__", None)
    name = module.name if module is not None else "__main__"
    flag_help = flags.FLAGS.module_help(name) if name in flags.FLAGS.flags_by_module_dict() else ""
    print(flag_help or flags.FLAGS.main_module_help())


def _parse_flags(
    argv: list[str], *, schema_of: Callable[[], Any], command: str, subcommands: dict[str, str]
) -> list[str]:
    from absl import flags

    from convnext_jax import schema

    if any(arg in HELP_FLAGS for arg in argv[1:]):
        print_help(command, subcommands, argv)
        sys.exit(0)

    try:
        return flags.FLAGS(argv)
    except flags.IllegalFlagValueError as e:
        message = str(e)
        if "Error whilst parsing config file" in message:
            fail(f"config file {message.split('=', 1)[-1].split(':')[0]}: {_config_file_error(message)}")
        fail(_override_type_error(message) or message)
    except flags.Error as e:
        name = re.search(r"Unknown command line flag '([^']+)'", str(e))
        if name and name.group(1).startswith("config."):
            fail(f"--{name.group(1)} needs --config FILE.py (the overrides change a config file's values)")
        fail(f"{e} ({command} --help lists the flags)")
    except (AttributeError, KeyError) as e:  # an override of a key the config does not have
        for arg in argv[1:]:
            match = re.match(r"^--config\.([\w.]+)=", arg)
            if match and schema.lookup(schema_of(), match.group(1)) is None:
                fail(schema.unknown_key_message(schema_of(), match.group(1)) + " (--show_config lists every key)")
        fail(str(e).replace("\\n", " ").strip("'\""))
    except UserError as e:
        fail(str(e))
    return []


def loaded_config(holder: Any) -> Any:
    """The config of a `config_flags.DEFINE_config_file` flag (None when not given), with a short
    error when the file is missing or cannot load."""
    from absl import flags
    from ml_collections import config_flags

    if not flags.FLAGS[holder.name].present:
        return None
    filename = config_flags.get_config_filename(flags.FLAGS[holder.name])
    path = filename.split(":")[0]
    if not os.path.isfile(path):
        raise ConfigError(
            f"config file {path} not found (the shipped configs are in configs/: "
            "embedded_digits.py, folder.py, finetune.py, seed_baseline.py, imagenet_recipe.py)"
        )
    try:
        config = holder.value
        config.keys()  # config_flags defers some load errors to the first access
    except UserError:
        raise
    except Exception as e:
        raise ConfigError(f"config file {filename}: {_config_file_error(str(e))}") from e
    return config
