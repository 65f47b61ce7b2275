"""What the command lines share: --snake_case flags (dashes accepted), and a user's mistake as one
short message with status 2."""

import pytest

from convnext_jax.cli import ArgumentParser, reports_user_errors
from convnext_jax.errors import ConfigError


def test_flags_are_snake_case_and_dashes_work_too():
    parser = ArgumentParser()
    parser.add_argument("--num_classes", type=int)
    parser.add_argument("--reset_head", action="store_true")
    assert vars(parser.parse_args(["--num-classes=3", "--reset-head"])) == {"num_classes": 3, "reset_head": True}
    assert parser.parse_args(["--num_classes", "4"]).num_classes == 4


def test_user_errors_are_one_line_and_status_2(capsys):
    @reports_user_errors
    def main():
        raise ConfigError("batch_size must be >= 1; got 0")

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2 and capsys.readouterr().err == "error: batch_size must be >= 1; got 0\n"

    @reports_user_errors
    def bug():
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        bug()
