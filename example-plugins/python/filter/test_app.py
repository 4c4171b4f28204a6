"""Tests of the `filter` example on the mock host: the Rust example's tests, ported, and
the fixtures (example-plugins/fixtures/filter and filter-edge, shared by every language),
whose expected files the Rust plugin wrote."""

import json
import tomllib
from pathlib import Path

import pytest

import eddy_plugin as eddy
from app import DROP, KEEP, MISSING, FieldFilter
from eddy_plugin.testing import MockHost

HERE = Path(__file__).parent
FIXTURES = [HERE.parent.parent / "fixtures" / "filter", HERE.parent.parent / "fixtures" / "filter-edge"]


def run(config, values):
    """(kept indices, rejection reasons) of the filter over `values`."""
    host = MockHost()
    plugin = host.init(FieldFilter, config)
    out = host.select(plugin, values)
    return out.kept, [r.reason for r in out.rejected]


def test_compares_numbers():
    values = ['{"amount": 99.5}', '{"amount": 100}', '{"amount": 250.25}']
    cases = {">=": [1, 2], ">": [2], "<": [0], "<=": [0, 1], "==": [1], "!=": [0, 2]}
    for op, kept in cases.items():
        config = {"field": "amount", "op": op, "value": "100"}
        assert run(config, values)[0] == kept, f"op {op}"


def test_select_agrees_with_the_verdict_of_each_event():
    values = [
        '{"amount": 99.5}',
        '{"amount": "100"}',
        '{"other": 1}',
        '{"amount": 1e3}',
        '{"am\\u006funt": 150}',
        '{"amount": -0}',
        '{"amount": [100]}',
        '{"amount": 100.0}',
    ] * 3
    batch = eddy.Batch.from_events(("", 0, v) for v in values)
    for op in ["==", "!=", "<", "<=", ">", ">="]:
        config = {"field": "amount", "op": op, "value": "100"}
        plugin = MockHost().init(FieldFilter, config)
        verdicts = [plugin.verdict(event) for event in batch]
        want_kept = [i for i, v in enumerate(verdicts) if v == KEEP]
        want_rejected = verdicts.count(MISSING)
        # Through the mock host (the column from the host) and on a plain batch (the
        # column parsed by the library).
        kept, rejected = run(config, values)
        assert (kept, len(rejected)) == (want_kept, want_rejected), f"op {op}"
        out = eddy.Selection()
        plugin.select(batch, out)
        assert out.kept == want_kept, f"op {op}"


def test_compares_text():
    config = {"field": "country", "op": "==", "value": "DE"}
    assert run(config, ['{"country": "DE"}', '{"country": "FR"}'])[0] == [0]


def test_rejects_events_without_the_field():
    config = {"field": "amount", "op": ">", "value": "1"}
    assert run(config, ['{"amount": 5}', '{"other": 5}']) == ([0], ["no field `amount`"])


def test_refuses_bad_config_with_the_rust_messages():
    host = MockHost()
    with pytest.raises(eddy.ConfigError) as error:
        host.init(FieldFilter, {"field": "a", "op": "~", "value": "1"})
    assert str(error.value) == 'config key `op` = "~": expected one of == != < <= > >='
    with pytest.raises(eddy.ConfigError) as error:
        host.init(FieldFilter, {"field": "a", "op": "=="})
    assert str(error.value) == "missing config key `value`"
    # `value` is checked first, then `field`, then `op`, as in Rust.
    with pytest.raises(eddy.ConfigError, match="^missing config key `field`$"):
        host.init(FieldFilter, {"op": "~", "value": "1"})
    with pytest.raises(eddy.ConfigError) as error:
        host.init(FieldFilter, {"field": "a", "op": '<"\n', "value": "1"})
    assert str(error.value) == 'config key `op` = "<\\"\\n": expected one of == != < <= > >='


def test_value_is_a_number_only_where_rust_parses_one():
    values = ['{"amount": 10}', '{"amount": "1_0"}', '{"amount": " 10"}']
    # Rust's f64 parser refuses "1_0" and " 10" (Python's float() takes both): they are
    # compared as text, with string fields only.
    assert run({"field": "amount", "op": "==", "value": "1_0"}, values)[0] == [1]
    assert run({"field": "amount", "op": "==", "value": " 10"}, values)[0] == [2]
    assert run({"field": "amount", "op": "==", "value": "+1e1"}, values)[0] == [0]


def test_nan_compares_with_nothing_not_even_with_not_equal():
    # A number against "nan" never holds; a string is compared as text.
    values = ['{"amount": 1}', '{"amount": "NaN"}']
    assert run({"field": "amount", "op": "!=", "value": "nan"}, values)[0] == [1]
    assert run({"field": "amount", "op": "==", "value": "nan"}, values)[0] == []


def test_other_json_types_are_dropped():
    values = ['{"amount": true}', '{"amount": null}', '{"amount": {"a": 1}}', '{"amount": [1]}']
    for op in ["==", "!=", ">="]:
        assert run({"field": "amount", "op": op, "value": "1"}, values) == ([], [])


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: str(p.relative_to(HERE.parent.parent)))
def test_fixture_gives_what_the_rust_plugin_gave(fixture):
    config = tomllib.loads((fixture / "config.toml").read_text())
    lines = (fixture / "input.jsonl").read_bytes().splitlines()
    host = MockHost()
    # Batches of 7, as the language suite runs them, and of the whole input.
    for size in (7, len(lines)):
        plugin = host.init(FieldFilter, config)
        kept, dead = [], []
        for start in range(0, len(lines), size):
            out = host.select(plugin, lines[start : start + size])
            kept += [lines[start + i] for i in out.kept]
            dead += [(start + r.index + 1, r.reason) for r in out.rejected]
        assert kept == (fixture / "expected.jsonl").read_bytes().splitlines()
        expected_dead = [json.loads(line) for line in (fixture / "expected-dead.jsonl").read_text().splitlines()]
        assert dead == [(d["position"], d["reason"]) for d in expected_dead]


def test_verdicts_name_the_three_outcomes():
    plugin = MockHost().init(FieldFilter, {"field": "a", "op": ">", "value": "1"})
    batch = eddy.Batch.from_events([("", 0, '{"a": 2}'), ("", 0, '{"a": 0}'), ("", 0, "{}")])
    assert [plugin.verdict(e) for e in batch] == [KEEP, DROP, MISSING]
