"""Tests of the `enrich` example on the mock host: the Rust example's tests, ported, and
the fixtures (example-plugins/fixtures/enrich and enrich-edge, shared by every language),
whose expected files the Rust plugin wrote."""

import json
import tomllib
from pathlib import Path

import pytest

import eddy_plugin as eddy
from app import Enrich
from eddy_plugin.testing import MockHost, Trap

HERE = Path(__file__).parent
FIXTURES = [HERE.parent.parent / "fixtures" / "enrich", HERE.parent.parent / "fixtures" / "enrich-edge"]


def host():
    return MockHost().with_row("users", "u1", '{"name": "Ada", "tier": "gold"}')


def test_merges_the_row_into_the_event():
    h = host()
    plugin = h.init(Enrich, {"table": "users", "field": "user"})
    out = h.process(plugin, [("u1", 5, '{"user": "u1", "amount": 3}'), ("u2", 6, '{"user": "u2"}')])
    values = [json.loads(v) for v in out.values]
    assert values[0]["name"] == "Ada"
    assert values[0]["amount"] == 3
    assert values[1] == {"user": "u2"}
    assert out.origins == [0, 1]
    assert out.timestamps == [5, 6]
    # The event's text as it was, then the row's members as they were.
    assert out.values[0] == b'{"user": "u1", "amount": 3,"name":"Ada","tier":"gold"}'
    assert out.keys == [b"u1", b"u2"]


def test_rejects_or_drops_when_asked():
    h = host()
    events = [("u2", 1, '{"user": "u2"}')]
    config = {"table": "users", "field": "user", "on_missing": "reject"}
    out = h.process(h.init(Enrich, config), events)
    assert out.rejected == [(0, "no row in `users` for field `user`")]
    assert out.values == []
    config["on_missing"] = "drop"
    out = h.process(h.init(Enrich, config), events)
    assert out.rejected == [] and out.values == []


def test_keys_are_the_text_of_strings_and_the_raw_json_of_the_rest():
    h = MockHost(tables={"t": {"5": '{"five": 1}', "true": '{"yes": 1}', "ü": '{"u": 1}'}})
    plugin = h.init(Enrich, {"table": "t", "field": "k", "on_missing": "drop"})
    events = ['{"k": 5}', '{"k": "5"}', '{"k": true}', '{"k": "\\u00fc"}', '{"k": 5.0}', '{"k": null}']
    out = h.process(plugin, events)
    assert out.origins == [0, 1, 2, 3]
    assert out.values[3] == b'{"k": "\\u00fc","u":1}'


def test_refuses_bad_config_with_the_rust_messages():
    h = host()
    with pytest.raises(eddy.ConfigError) as error:
        h.init(Enrich, {"table": "users", "field": "user", "on_missing": "maybe"})
    assert str(error.value) == 'config key `on_missing` = "maybe": expected keep, reject or drop'
    with pytest.raises(eddy.ConfigError, match="^missing config key `table`$"):
        h.init(Enrich, {"field": "user"})
    with pytest.raises(eddy.ConfigError, match="^missing config key `field`$"):
        h.init(Enrich, {"table": "users"})


def test_an_undeclared_table_fails_at_init():
    # The real host traps on the lookup; the pipeline does not start.
    with pytest.raises(Trap, match="no side-input table `nope`"):
        MockHost().init(Enrich, {"table": "nope", "field": "user"})


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: str(p.relative_to(HERE.parent.parent)))
def test_fixture_gives_what_the_rust_plugin_gave(fixture):
    config = tomllib.loads((fixture / "config.toml").read_text())
    # The side input as the host reads it: keyed by the text of `user`, or its JSON.
    rows = {}
    for line in (fixture / "users.jsonl").read_bytes().splitlines():
        key = json.loads(line)["user"]
        rows[key if isinstance(key, str) else json.dumps(key)] = line
    lines = (fixture / "input.jsonl").read_bytes().splitlines()
    h = MockHost(tables={"users": rows})
    for size in (7, len(lines)):
        plugin = h.init(Enrich, config)
        emitted, dead = [], []
        for start in range(0, len(lines), size):
            out = h.process(plugin, lines[start : start + size])
            emitted += out.values
            dead += [(start + r.index + 1, r.reason) for r in out.rejected]
        assert emitted == (fixture / "expected.jsonl").read_bytes().splitlines()
        expected_dead = [json.loads(line) for line in (fixture / "expected-dead.jsonl").read_text().splitlines()]
        assert dead == [(d["position"], d["reason"]) for d in expected_dead]
