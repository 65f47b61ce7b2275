"""Config schemas: defaults, checks with the closest name, the listing of every key."""

import ml_collections
import pytest

from convnext_jax import schema
from convnext_jax.schema import Key

SCHEMA = {
    "lr": Key(0.1, "learning rate", low=0.0, low_open=True),
    "name": Key("adamw", "optimizer", choices=("adamw", "sgd")),
    "model": {
        "dims": Key((), "widths", item_low=1),
        "mean": Key((0.5, 0.5), "mean", length=2),
        "scan": Key(False, "scan blocks", run=False),
    },
}


def test_build_and_walk():
    config = schema.build(SCHEMA)
    assert isinstance(config, ml_collections.ConfigDict) and config.model.mean == (0.5, 0.5)
    assert [k for k, _ in schema.walk(SCHEMA)] == ["lr", "name", "model.dims", "model.mean", "model.scan"]
    assert schema.lookup(SCHEMA, "model.scan").run is False and schema.lookup(SCHEMA, "model.nope") is None


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lr": 0.0}, "lr must be > 0.0; got 0.0"),
        ({"lr": "fast"}, "lr must be float, got 'fast' (str)"),
        ({"lr": float("nan")}, "lr must be > 0.0; got nan"),
        ({"name": "adamv"}, "name must be one of adamw, sgd; got 'adamv' (did you mean 'adamw'?)"),
        ({"model": {"dims": (8, 0)}}, "model.dims must hold numbers >= 1"),
        ({"model": {"mean": (0.5,)}}, "model.mean must have 2 values"),
        ({"model": {"scan": 1}}, "model.scan must be bool"),
        ({"optim": {}}, "unknown config key 'optim'"),
        ({"model": {"dimz": (8,)}}, "unknown config key 'model.dimz' (did you mean 'model.dims'?)"),
        ({"model": 3}, "model must be a section of keys"),
    ],
)
def test_check_names_each_problem(values, message):
    problems = schema.check(SCHEMA, values)
    assert len(problems) == 1 and message in problems[0], problems


def test_ints_are_floats_and_lists_are_tuples():
    assert schema.check(SCHEMA, {"lr": 1, "model": {"dims": [8, 16]}}) == []
    assert schema.json_tuples({"a": [1, [2, 3]], "b": {"c": []}}) == {"a": (1, (2, 3)), "b": {"c": ()}}
    assert schema.flatten({"a": {"b": [1, 2]}, "c": 3}) == {"a.b": (1, 2), "c": 3}


def test_describe_shows_value_default_meaning_and_choices():
    config = schema.build(SCHEMA)
    config.lr = 0.5
    text = schema.describe(SCHEMA, config)
    assert "lr = 0.5  (default 0.1)\n    learning rate [> 0.0]" in text
    assert "name = 'adamw'\n    optimizer [one of adamw, sgd]" in text
    assert "model.scan = False\n    scan blocks (may change when resuming)" in text
