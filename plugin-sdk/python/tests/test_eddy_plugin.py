"""Tests of the helper library: the JSON scanner and helpers (against the Rust SDK's own
test vectors), batches and outputs, the mock host's rules, and the component exports
(driven with stand-ins for the bindings componentize-py generates)."""

import math
import sys
import types

import pytest

import eddy_plugin as eddy
from eddy_plugin import _json
from eddy_plugin.testing import MockHost, Trap

# ----------------------------------------------------------------------------------------
# JSON


def field(obj, name):
    f = eddy.Event(0, b"", 0, obj).field(name)
    return f


def test_finds_fields_of_every_kind():
    v = b' { "a" : 1, "b": "x\\"y", "c": {"a": 2, "d": [1, {"e": "}"}]}, "d": -2.5e1, "e": null } '
    assert field(v, "a").as_number() == 1
    assert field(v, "b").as_str() == 'x"y'
    assert field(v, "c").raw == b'{"a": 2, "d": [1, {"e": "}"}]}'
    assert field(v, "c").json() == {"a": 2, "d": [1, {"e": "}"}]}
    assert field(v, "d").as_number() == -25.0
    assert field(v, "e").is_null()
    assert field(v, "f") is None


def test_nested_keys_are_not_top_level_and_the_first_key_wins():
    assert field(b'{"x": {"amount": 5}}', "amount") is None
    assert field(b'{"note": "\\"amount\\": 1"}', "amount") is None
    assert field(b'{"a": 1, "a": 2}', "a").raw == b"1"
    assert field(b'{"\\u0061": 1, "a": 2}', "a").raw == b"1"


def test_escaped_keys_match_their_text():
    assert field(b'{"amou\\u006et": 7}', "amount").raw == b"7"
    assert field(b'{"a\\"b": 7}', 'a"b').raw == b"7"


def test_malformed_input_gives_none():
    for bad in [b"", b"[1]", b"{", b'{"a"', b'{"a":', b'{"a" 1}', b'{"a":1 "b":2}', b'"s"', b"{}"]:
        assert field(bad, "b") is None, bad


def test_numbers_parse_like_rust():
    for text in ["1e3", "1.5E-2", "9007199254740993", "-0", "12345678901234567890", "1e400"]:
        assert eddy.Field(text.encode()).as_number() == float(text)
    for not_a_number in ["-", "1..2", "--1", "1x", '"1"', "true", "[1]", "inf", "NaN"]:
        assert eddy.Field(not_a_number.encode()).as_number() is None, not_a_number
    # Not JSON, but a number to Rust's parser as well (the host never hands it over).
    assert eddy.Field(b"-inf").as_number() == -math.inf


def test_parse_f64_takes_what_rust_takes():
    # Checked against `str::parse::<f64>` (rustc 1.95).
    accepted = ["1.", ".5", "+1", "inf", "+inf", "-Infinity", "INFINITY", "nan", "NaN", "-nan", "+nan",
                "1E5", "1.5e-3", "+.5", "1e+5", "00012", "1.e3"]  # fmt: skip
    refused = [".", "1e", "1e+", "e5", "infin", "1_0", " 1", "1 ", "0x10", "-.e1", ".e1", "", "+", "-",
               "infinityx", "nanx", "+-1", "1e5.0", "1ee5", "\u0661"]  # fmt: skip
    for text in accepted:
        assert eddy.parse_f64(text) is not None, text
    for text in refused:
        assert eddy.parse_f64(text) is None, text
    assert math.isnan(eddy.parse_f64("-nan"))


def test_strings_decode_like_serde_json():
    assert eddy.Field(b'"\\ud83d\\ude00"').as_str() == "\U0001f600"
    assert eddy.Field(b'"\\ud800"').as_str() is None  # a lone surrogate
    assert eddy.Field(b'"a\\/b"').as_str() == "a/b"
    assert eddy.Field(b"5").as_str() is None
    assert eddy.Field(b'"').as_str() is None
    assert eddy.Field(b"true").as_bool() is True
    assert eddy.Field(b"1").as_bool() is None


def test_merges_objects_like_the_rust_sdk():
    assert eddy.merge_objects(b'{"a":1}', b' {"b":2} ') == b'{"a":1,"b":2}'
    assert eddy.merge_objects(b'{"a":1,"b":2}', b'{"b":3, "c" : [4], "a":0}') == b'{"a":1,"b":2,"c":[4]}'
    assert eddy.merge_objects(b"{}", b'{"c":1}') == b'{"c":1}'
    assert eddy.merge_objects(b'{"a":1}', b"{}") == b'{"a":1}'
    assert eddy.merge_objects(b"[]", b"{}") is None
    assert eddy.merge_objects(b"{}", b"[]") is None
    # Base text kept as it is (trimmed inside the braces), escaped keys compared decoded.
    assert eddy.merge_objects(b'{ "a" : 1 }', b'{"\\u0061":2,"b":3}') == b'{"a" : 1,"b":3}'
    assert eddy.merge_objects(b'\x0c{"a":1}\x0c', b"{}") == b'{"a":1}'
    assert eddy.merge_objects(b'{"\\u0062":1}', b'{"b":2}') == b'{"\\u0062":1}'


def test_quote_writes_strings_as_rusts_debug_format():
    # Each checked against `format!("{:?}", s)` (rustc 1.95).
    cases = {
        "~": '"~"',
        '~"\\\n\t\x7f\x1bé😀\u200b\u00ad': '"~\\"\\\\\\n\\t\\u{7f}\\u{1b}é😀\\u{200b}\\u{ad}"',
        "\u0301x": '"\\u{301}x"',
        "a\u200cb": '"a\\u{200c}b"',
        "\0\r'": '"\\0\\r\'"',
        "\u00a0\u2028\ue000": '"\\u{a0}\\u{2028}\\u{e000}"',
        "x\u0903\uff9e": '"x\u0903\\u{ff9e}"',
    }
    for text, want in cases.items():
        assert eddy.quote(text) == want, text


def test_the_scanner_reads_well_formed_objects_like_json():
    import json
    import random

    rnd = random.Random(7)

    def value(depth=0):
        r = rnd.random()
        if depth < 3 and r < 0.2:
            return {rnd.choice("ab\"ü") + str(i): value(depth + 1) for i in range(rnd.randint(0, 3))}
        if depth < 3 and r < 0.3:
            return [value(depth + 1) for _ in range(rnd.randint(0, 3))]
        return rnd.choice([1, -2.5e10, "s", 'q"u\\o\n', "ü😀", None, True, 0, "}]"])

    for _ in range(500):
        obj = {rnd.choice(["a", "amount", 'a"b', "ü", ""]): value() for _ in range(rnd.randint(0, 5))}
        text = json.dumps(obj, ensure_ascii=rnd.random() < 0.5, indent=rnd.choice([None, 1])).encode()
        members = [(json.loads(k), json.loads(v)) for k, v in _json.fields(text)]
        assert members == list(obj.items())


# ----------------------------------------------------------------------------------------
# Batches and outputs


def test_batches_walk_packed_columns():
    batch = eddy.Batch.from_events([("k1", 10, '{"a":1}'), (b"", 20, b'{"a":2}')])
    events = list(batch)
    assert len(batch) == 2
    assert [(e.index, e.key, e.timestamp, e.value) for e in events] == [
        (0, b"k1", 10, b'{"a":1}'),
        (1, b"", 20, b'{"a":2}'),
    ]
    assert batch[1].value == events[1].value and batch[-1].index == 1
    assert events[1].json() == {"a": 2}
    with pytest.raises(IndexError):
        batch[2]


def test_headers_are_per_event():
    batch = eddy.Batch.from_events([("", 1, "{}"), ("", 2, "{}", [("a", "x"), ("b", "yz")])])
    assert batch[0].headers == []
    assert batch[1].headers == [(b"a", b"x"), (b"b", b"yz")]
    assert batch[1].header("b") == b"yz" and batch[1].header("c") is None
    assert eddy.Batch.from_events([("", 1, "{}")]).headers is None


def test_numbers_come_from_the_host_or_are_parsed_here():
    values = ['{"amount": 42.5}', '{"amount": "n/a"}', "{}"]
    plain = eddy.Batch.from_events(("", 0, v) for v in values).numbers("amount")
    assert plain[0] == 42.5 and math.isnan(plain[1]) and math.isnan(plain[2])

    class Host:  # a host that has not parsed the field yet, then has
        answers = [[], [1.0, 2.0, 3.0]]

        def field_numbers(self, name):
            return self.answers.pop(0)

    b = eddy.Batch.from_events(("", 0, v) for v in values)
    host_batch = eddy.Batch(b.values, b.value_ends, b.keys, b.key_ends, b.timestamps, from_host=True)
    previous, eddy._backend = eddy._backend, Host()
    try:
        assert host_batch.numbers("amount")[0] == 42.5  # the fallback
        assert host_batch.numbers("amount") == [1.0, 2.0, 3.0]  # the host's column
    finally:
        eddy._backend = previous


def test_outputs_pack_values_keys_times_and_origins():
    batch = eddy.Batch.from_events([("k", 5, '{"a":1}'), ("j", 6, '{"a":2}')])
    out = eddy.Output()
    out.forward(batch[0])
    out.emit(batch[1], '{"b":"ü"}')
    out.emit(batch[1], b"{}", key="new", timestamp=7)
    out.emit_json(batch[1], {"c": "ü"})
    out.reject(batch[0], "why")
    assert out.values == [b'{"a":1}', '{"b":"ü"}'.encode(), b"{}", '{"c":"ü"}'.encode()]
    assert out.keys == [b"k", b"j", b"new", b"j"]
    assert out.timestamps == [5, 6, 7, 6]
    assert out.origins == [0, 1, 1, 1]
    assert out.rejected == [(0, "why")]
    with pytest.raises(TypeError, match="emit_json"):
        out.emit(batch[0], {"a": 1})


# ----------------------------------------------------------------------------------------
# The mock host


class Counter(eddy.Transform):
    """Counts events per key in keyed state; logs; fails on `{"fail": ...}`."""

    def __init__(self, config):
        self.name = config.require("name")
        if config.get("fail"):
            raise ValueError("bad config")

    def process(self, batch, out):
        for event in batch:
            if event.field("fail"):
                raise KeyError("fail")
            count = int(eddy.state.get(event.key, self.name) or 0) + 1
            eddy.state.set(event.key, self.name, str(count))
            eddy.log.info(f"{event.key.decode()}: {count}")
            out.emit_json(event, {"count": count})


def test_mock_host_keeps_state_and_logs():
    host = MockHost(state={"a": {"n": "5"}})
    plugin = host.init(Counter, {"name": "n"})
    out = host.process(plugin, [("a", 0, "{}"), ("b", 0, "{}"), ("a", 0, "{}")])
    assert out.values == [b'{"count":6}', b'{"count":1}', b'{"count":7}']
    assert host.state("a", "n") == b"7" and host.state(b"b", "n") == b"1"
    assert host.logs == [(eddy.Level.INFO, "a: 6"), (eddy.Level.INFO, "b: 1"), (eddy.Level.INFO, "a: 7")]


def test_mock_host_refuses_state_of_keys_outside_the_batch():
    class Thief(eddy.Filter):
        def select(self, batch, out):
            eddy.state.get("someone else", "n")

    host = MockHost()
    with pytest.raises(Trap, match="not the key of an event"):
        host.select(host.init(Thief), [("mine", 0, "{}")])


def test_a_refused_config_says_why():
    host = MockHost()
    with pytest.raises(eddy.ConfigError, match="^missing config key `name`$"):
        host.init(Counter)
    with pytest.raises(eddy.ConfigError, match="^ValueError: bad config$"):
        host.init(Counter, [("name", "n"), ("fail", "yes"), ("name", "ignored")])


def test_an_exception_in_a_batch_is_logged_and_raised():
    host = MockHost()
    plugin = host.init(Counter, {"name": "n"})
    with pytest.raises(KeyError):
        host.process(plugin, [("a", 0, '{"fail": 1}')])
    (level, message), (debug, trace) = host.logs
    assert (level, message) == (eddy.Level.ERROR, "KeyError: 'fail'")
    assert debug == eddy.Level.DEBUG and trace.startswith("Traceback") and "KeyError" in trace


def test_host_calls_outside_a_plugin_call_are_refused():
    with pytest.raises(RuntimeError, match="outside a plugin call"):
        eddy.lookup("t", "k")


# ----------------------------------------------------------------------------------------
# The component's exports, with stand-ins for componentize-py's bindings


class Err(Exception):
    """Like componentize_py_types.Err: init's error result."""

    def __init__(self, value):
        super().__init__(value)
        self.value = value


class Record:
    def __init__(self, *args):
        self.args = args


@pytest.fixture
def component(monkeypatch):
    """An app module and fake bindings; yields (module, host calls)."""
    calls = []
    host = types.ModuleType("wit_world.imports.host")
    host.Level = eddy.Level
    host.log = lambda level, message: calls.append((level, message))
    host.lookup = lambda table, key: b'{"row":1}'
    host.field_numbers = lambda name: []
    host.state_get = host.state_set = host.state_delete = None
    wit_types = types.ModuleType("wit_world.imports.types")
    wit_types.Batch = wit_types.Rejection = Record
    imports = types.ModuleType("wit_world.imports")
    imports.host, imports.types = host, wit_types
    world = types.ModuleType("wit_world")
    world.exports = types.SimpleNamespace(Lifecycle=object, Filter=object, Transform=object)
    fakes = {
        "componentize_py_types": types.SimpleNamespace(Err=Err),
        "wit_world": world,
        "wit_world.imports": imports,
        "wit_world.imports.host": host,
        "wit_world.imports.types": wit_types,
    }
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    app = types.ModuleType("fake_app")
    monkeypatch.setitem(sys.modules, "fake_app", app)
    for name in ("_backend", "_wit", "_plugin", "_plugin_class"):
        monkeypatch.setattr(eddy, name, getattr(eddy, name))
    yield app, calls


def wit_batch(values):
    b = eddy.Batch.from_events(("", i, v) for i, v in enumerate(values))
    return types.SimpleNamespace(
        values=b.values, value_ends=b.value_ends, keys=b.keys, key_ends=b.key_ends,
        timestamps=b.timestamps, headers=None,
    )  # fmt: skip


def test_export_binds_a_filter_for_componentize_py(component):
    app, calls = component

    class Big(eddy.Filter):
        __module__ = "fake_app"

        def __init__(self, config):
            self.min = float(config.require("min"))

        def select(self, batch, out):
            for event, n in zip(batch, batch.numbers("n")):
                if n >= self.min:
                    out.keep(event)
                elif math.isnan(n):
                    out.reject(event, "no n")

    assert eddy.export(Big) is Big
    with pytest.raises(Err) as error:
        app.Lifecycle().init([])
    assert error.value.value == "missing config key `min`"
    app.Lifecycle().init([("min", "2")])
    kept, rejected = app.Filter().select(wit_batch(['{"n": 1}', '{"n": 5}', "{}"]))
    assert kept == [1]
    assert [r.args for r in rejected] == [(2, "no n")]


def test_export_binds_a_transform_and_a_failing_batch_logs_then_raises(component):
    app, calls = component

    class Tag(eddy.Transform):
        __module__ = "fake_app"

        def process(self, batch, out):
            for event in batch:
                if event.field("boom"):
                    raise ValueError("boom")
                out.emit(event, eddy.merge_objects(event.value, eddy.lookup("t", event.key)))

    eddy.export(Tag)
    app.Lifecycle().init([])
    packed, origins, rejected = app.Transform().process(wit_batch(['{"a":1}']))
    assert packed.args == (b'{"a":1,"row":1}', [15], b"", [0], [0], None)
    assert (origins, rejected) == ([0], [])
    with pytest.raises(ValueError):
        app.Transform().process(wit_batch(['{"boom":1}']))
    assert calls[0] == (eddy.Level.ERROR, "ValueError: boom")
    assert calls[1][0] == eddy.Level.DEBUG and "Traceback" in calls[1][1]


def test_export_refuses_a_class_named_like_an_export(component):
    app, _ = component

    class Filter(eddy.Filter):
        __module__ = "fake_app"

    app.Filter = Filter
    with pytest.raises(TypeError, match="defines `Filter`"):
        eddy.export(Filter)
    with pytest.raises(TypeError, match="subclass of eddy_plugin.Filter"):
        eddy.export(object)


def test_export_refuses_a_plugin_of_another_world(component):
    class Tag(eddy.Transform):
        __module__ = "fake_app"

    del sys.modules["wit_world"].exports.Transform  # a filter-plugin build
    with pytest.raises(TypeError, match="build it as transform-plugin"):
        eddy.export(Tag)


def test_merge_objects_takes_text_as_well_as_bytes_and_base_wins():
    merged = eddy.merge_objects('{"a": 1}', '{"a": 2, "b": "x"}')
    assert merged == b'{"a": 1,"b":"x"}'
    assert eddy.merge_objects(b'{"a": 1}', '{"b": 2}') == b'{"a": 1,"b":2}'
