"""An in-memory Eddy host for testing plugins with pytest, under plain CPython.

:class:`MockHost` plays the host's part, like the Rust SDK's ``mock::MockHost``: it holds
side-input tables and keyed state, captures log messages, answers ``batch.numbers`` and
enforces the host's rules::

    from eddy_plugin.testing import MockHost
    from app import Plugin

    def test_keeps_big_amounts():
        host = MockHost(tables={"users": {"u1": '{"name": "Ada"}'}})
        plugin = host.init(Plugin, {"field": "amount", "op": ">=", "value": "100"})
        out = host.select(plugin, [("u1", 0, '{"amount": 150}'), ("u2", 0, '{"amount": 5}')])
        assert out.kept == [0]
"""

# Invariants:
# - A plugin runs through the same code as in a component (eddy_plugin._create and
#   eddy_plugin._call): a refused config raises eddy_plugin.ConfigError with the message
#   the host would report; an exception in select/process is logged as the component
#   logs it, then raised to the test.
# - What the real host refuses by trapping (a state key that is not the key of an event in
#   the current batch, state touched in init, a lookup in an undeclared table) raises
#   Trap, which is not an Exception: the plugin cannot catch it by accident, as it
#   cannot catch a trap.
# - Host calls are served only during a MockHost call; eddy_plugin's backend is restored
#   afterwards, so mock hosts can be nested or used one after another.

import json

import eddy_plugin
from eddy_plugin import Batch, Level, Output, Selection

__all__ = ["MockHost", "Trap"]


class Trap(BaseException):
    """A host call the real host would refuse by trapping the plugin call."""


def _bytes(data):
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def _row(row):
    return _bytes(json.dumps(row) if isinstance(row, dict) else row)


def _batch(events):
    """A Batch of ``events``: a Batch, or (key, timestamp, value[, headers]) tuples, or bare
    values (str or bytes: empty key, event time 0)."""
    if isinstance(events, Batch):
        return events
    return Batch.from_events(
        (b"", 0, event) if isinstance(event, (str, bytes)) else event for event in events
    )


class MockHost:
    """A stand-in for the Eddy host in tests.

    ``tables``: side-input tables, ``{table: {key: row}}`` (keys str or bytes; rows JSON
    text, or a dict). ``state``: keyed state to start from, ``{key: {name: value}}``.
    """

    def __init__(self, tables=None, state=None):
        self._tables = {
            table: {_bytes(key): _row(row) for key, row in rows.items()}
            for table, rows in (tables or {}).items()
        }
        self._state = {
            (_bytes(key), name): _bytes(value)
            for key, names in (state or {}).items()
            for name, value in names.items()
        }
        #: Everything the plugin logged so far, as (Level, message) pairs.
        self.logs = []

    def with_row(self, table, key, row):
        """Adds a row to side-input table ``table`` (creating the table); returns self."""
        self._tables.setdefault(table, {})[_bytes(key)] = _row(row)
        return self

    def with_table(self, table):
        """Declares an empty side-input table; returns self."""
        self._tables.setdefault(table, {})
        return self

    def init(self, cls, config=None):
        """Creates a plugin of class ``cls`` from ``config`` (a dict or (key, value) pairs)
        as the host does when it loads it. Raises :class:`eddy_plugin.ConfigError` with the
        message the host would report when the plugin refuses the config."""
        return self._run(Batch.from_events([]), lambda: eddy_plugin._create(cls, config or {}))

    def select(self, plugin, events):
        """Runs a filter over ``events`` (see the module's doc for their forms); returns
        the :class:`eddy_plugin.Selection` (``kept``, ``rejected``)."""
        batch = self._host_batch(events)
        return self._run(batch, lambda: eddy_plugin._call(plugin.select, batch, Selection()))

    def process(self, plugin, events):
        """Runs a transform over ``events``; returns the :class:`eddy_plugin.Output`
        (``values``, ``keys``, ``timestamps``, ``origins``, ``rejected``, ``batch``)."""
        batch = self._host_batch(events)
        return self._run(batch, lambda: eddy_plugin._call(plugin.process, batch, Output()))

    def state(self, key, name):
        """Keyed state ``name`` of ``key`` as the plugin left it (bytes), or None."""
        return self._state.get((_bytes(key), name))

    def _host_batch(self, events):
        b = _batch(events)
        return Batch(b.values, b.value_ends, b.keys, b.key_ends, b.timestamps, b.headers, from_host=True)

    def _run(self, batch, call):
        previous = eddy_plugin._backend
        eddy_plugin._backend = _Serving(self, batch)
        try:
            return call()
        finally:
            eddy_plugin._backend = previous


class _Serving:
    """The host calls of one MockHost call, over the batch being processed."""

    def __init__(self, host, batch):
        self.host = host
        self.batch = batch
        self.keys = {event.key for event in batch}

    def _check_key(self, key):
        if key not in self.keys:
            raise Trap(
                f"state key {key!r} is not the key of an event in the current batch; the host refuses it"
            )

    def log(self, level, message):
        if not isinstance(level, Level):
            raise TypeError(f"log level must be an eddy_plugin.Level, not {level!r}")
        self.host.logs.append((level, message))

    def state_get(self, key, name):
        self._check_key(key)
        return self.host._state.get((key, name))

    def state_set(self, key, name, value):
        self._check_key(key)
        self.host._state[(key, name)] = value

    def state_delete(self, key, name):
        self._check_key(key)
        self.host._state.pop((key, name), None)

    def lookup(self, table, key):
        rows = self.host._tables.get(table)
        if rows is None:
            raise Trap(f"no side-input table `{table}`; declare it on the MockHost")
        return rows.get(key)

    def field_numbers(self, name):
        # Unlike the host, which parses a field from the batch after the one that first
        # asked for it, the mock answers at once (parsed here, like the Rust mock).
        return Batch(self.batch.values, self.batch.value_ends, b"", [], self.batch.timestamps).numbers(name)
