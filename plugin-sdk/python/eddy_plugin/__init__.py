"""Eddy plugins in Python: the helper library over the WIT contract (wit/eddy.wit).

A plugin is one module, ``app.py``::

    import eddy_plugin as eddy

    class Plugin(eddy.Filter):                     # or eddy.Transform
        def __init__(self, config: eddy.Config):   # raise to refuse the config
            self.min = float(config.get("min", "100"))

        def select(self, batch: eddy.Batch, out: eddy.Selection):
            for event, amount in zip(batch, batch.numbers("amount")):
                if amount >= self.min:
                    out.keep(event)

    eddy.export(Plugin)

``plugin-sdk/python/build.sh`` turns it into a component, ``plugin-sdk/python/test.sh`` runs
its pytest tests on :class:`eddy_plugin.testing.MockHost` (no Wasm involved).
"""

# Invariants:
# - One plugin instance per component: the host calls `lifecycle.init` once, before any
#   batch; the instance lives in `_plugin` until the component is dropped.
# - Every host call goes through `_backend`: the componentize-py bindings of the `host`
#   interface inside a component (set by `export`, which runs when componentize-py imports
#   app.py at build time), or the MockHost running the plugin in a test (set by
#   eddy_plugin.testing for the length of one call). Outside both, a host call raises.
# - Keys, values and state are bytes; wherever a key or value is taken, str is accepted
#   and encoded as UTF-8. Event values are JSON objects, UTF-8, exactly as the host holds
#   them: nothing here re-serialises an event the plugin did not rewrite itself.
# - An exception escaping `__init__` refuses the config (init's error result); one escaping
#   `select`/`process` is logged at error level ("<Type>: <message>", the traceback at
#   debug level) and re-raised, so the call traps and the host fails that batch.
# - This module imports nothing from the generated bindings at import time: under plain
#   CPython (tests) there are none.

import enum
import json
import sys
import traceback
from typing import NamedTuple

from . import _json
from ._json import merge_objects, parse_f64, quote

__all__ = [
    "Batch",
    "Config",
    "ConfigError",
    "Event",
    "Field",
    "Filter",
    "Level",
    "Output",
    "Rejection",
    "Selection",
    "Transform",
    "export",
    "log",
    "lookup",
    "merge_objects",
    "parse_f64",
    "quote",
    "state",
]

# ---------------------------------------------------------------------------------------
# Configuration


class ConfigError(Exception):
    """Refuses a plugin's config: raised from ``__init__``, its message is what the host
    reports (the pipeline does not start, or a hot swap keeps the old version)."""


class Config(dict):
    """The stage's ``config`` table from the pipeline file: a ``dict`` of str to str."""

    def require(self, key):
        """The value of ``key``, or :class:`ConfigError` naming the missing key (the Rust
        SDK's message: ``missing config key `key```)."""
        try:
            return self[key]
        except KeyError:
            raise ConfigError(f"missing config key `{key}`") from None


# ---------------------------------------------------------------------------------------
# Events


class Field:
    """One top-level field of an event's value: the raw JSON text of its value, converted
    on demand."""

    __slots__ = ("raw",)

    def __init__(self, raw):
        #: The value's JSON text exactly as it appears in the event (bytes), e.g. ``b'42.5'``.
        self.raw = raw

    def as_number(self):
        """The value as a float if it is a JSON number, else None."""
        return _json.number(self.raw)

    def as_str(self):
        """The value as a str if it is a JSON string (escapes decoded), else None."""
        return _json.string(self.raw)

    def as_bool(self):
        """True or False if the value is ``true`` or ``false``, else None."""
        return {b"true": True, b"false": False}.get(self.raw)

    def is_null(self):
        """Whether the value is JSON ``null``."""
        return self.raw == b"null"

    def json(self):
        """The value parsed with :func:`json.loads` (any JSON type)."""
        return json.loads(self.raw)

    def __repr__(self):
        return f"Field({self.raw!r})"


class Event:
    """One event of a batch: its position, key, event time, value and headers."""

    __slots__ = ("index", "key", "timestamp", "value", "_headers")

    def __init__(self, index, key, timestamp, value, headers=None):
        #: Position in the batch; outputs and rejections refer to the event by it.
        self.index = index
        #: The key (bytes; empty when the pipeline has no ``key_field``).
        self.key = key
        #: Event time, milliseconds since the Unix epoch.
        self.timestamp = timestamp
        #: The value: a JSON object, UTF-8 bytes.
        self.value = value
        self._headers = headers

    def field(self, name):
        """The first top-level field ``name`` of the value as a :class:`Field`, or None;
        reads the raw text without parsing the rest of the value."""
        raw = _json.field(self.value, name)
        return None if raw is None else Field(raw)

    def json(self):
        """The whole value parsed with :func:`json.loads` (a dict)."""
        return json.loads(self.value)

    @property
    def headers(self):
        """The event's headers as a list of (name, value) bytes pairs."""
        h = self._headers
        if h is None:
            return []
        first, end = _span(h.header_ends, self.index)
        return [
            (h.names[slice(*_span(h.name_ends, i))], h.values[slice(*_span(h.value_ends, i))])
            for i in range(first, end)
        ]

    def header(self, name):
        """The value of the first header called ``name`` (str or bytes), or None."""
        name = _bytes(name)
        return next((v for n, v in self.headers if n == name), None)

    def __repr__(self):
        return f"Event({self.index}, key={self.key!r}, timestamp={self.timestamp}, value={self.value!r})"


def _span(ends, i):
    """Where item ``i`` of a packed column is: (start, end)."""
    return (ends[i - 1] if i else 0), ends[i]


def _bytes(data):
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


class _Headers:
    """Packed headers (the WIT ``packed-headers`` record), for batches built here."""

    __slots__ = ("header_ends", "names", "name_ends", "values", "value_ends")

    def __init__(self):
        self.header_ends, self.names, self.name_ends = [], bytearray(), []
        self.values, self.value_ends = bytearray(), []


class Batch:
    """A batch of events, column by column as the host packs it (see ``batch`` in
    wit/eddy.wit). ``len(batch)``, ``batch[i]`` and ``for event in batch`` give
    :class:`Event` views."""

    def __init__(self, values, value_ends, keys, key_ends, timestamps, headers=None, from_host=False):
        self.values = values
        self.value_ends = value_ends
        self.keys = keys
        self.key_ends = key_ends
        self.timestamps = timestamps
        #: A ``packed-headers`` record, or None when no event has a header.
        self.headers = headers
        # Whether this is the batch the host is running the plugin on (numbers() asks it).
        self._from_host = from_host

    @classmethod
    def from_events(cls, events):
        """A batch of ``(key, timestamp, value)`` or ``(key, timestamp, value, headers)``
        tuples (str or bytes; headers a list of (name, value) pairs), e.g. for tests."""
        values, value_ends, keys, key_ends, timestamps = bytearray(), [], bytearray(), [], []
        headers = _Headers()
        for key, timestamp, value, *rest in events:
            values += _bytes(value)
            value_ends.append(len(values))
            keys += _bytes(key)
            key_ends.append(len(keys))
            timestamps.append(timestamp)
            for name, text in (rest[0] if rest else None) or ():
                headers.names += _bytes(name)
                headers.name_ends.append(len(headers.names))
                headers.values += _bytes(text)
                headers.value_ends.append(len(headers.values))
            headers.header_ends.append(len(headers.name_ends))
        has_headers = bool(headers.name_ends)
        if has_headers:
            headers.names, headers.values = bytes(headers.names), bytes(headers.values)
        return cls(bytes(values), value_ends, bytes(keys), key_ends, timestamps, headers if has_headers else None)

    def __len__(self):
        return len(self.timestamps)

    def __getitem__(self, i):
        if not -len(self) <= i < len(self):
            raise IndexError(f"event {i} of a batch of {len(self)}")
        i %= len(self)
        return Event(
            i,
            self.keys[slice(*_span(self.key_ends, i))],
            self.timestamps[i],
            self.values[slice(*_span(self.value_ends, i))],
            self.headers,
        )

    def __iter__(self):
        values, keys, headers = self.values, self.keys, self.headers
        value_start = key_start = 0
        for i, (value_end, key_end, timestamp) in enumerate(zip(self.value_ends, self.key_ends, self.timestamps)):
            yield Event(i, keys[key_start:key_end], timestamp, values[value_start:value_end], headers)
            value_start, key_start = value_end, key_end

    def numbers(self, name):
        """The number in top-level field ``name`` of every event, in order, as a list of
        floats: NaN where an event has no such field or it is not a JSON number.

        The host parses the column with native code (``field-numbers``), much faster than
        reading each value here; when it has not parsed that field yet (the first batch
        that asks) it answers with an empty list, and the column is parsed here."""
        if self._from_host:
            numbers = _host().field_numbers(name)
            if len(numbers) == len(self):
                return list(numbers)
        nan = float("nan")
        column = []
        start = 0
        for end in self.value_ends:
            raw = _json.field(self.values[start:end], name)
            start = end
            number = None if raw is None else _json.number(raw)
            column.append(nan if number is None else number)
        return column

    def __repr__(self):
        return f"Batch({list(self)!r})"


# ---------------------------------------------------------------------------------------
# Outputs


class Rejection(NamedTuple):
    """One refused input event and why: it goes to the dead-letter sink with ``reason``."""

    index: int
    reason: str


class Selection:
    """A filter's verdict on a batch. Keep events in the order the batch yields them."""

    def __init__(self):
        #: Indices of the kept events, ascending.
        self.kept = []
        #: The rejected events, as :class:`Rejection`.
        self.rejected = []

    def keep(self, event):
        """Keeps ``event``."""
        self.kept.append(event.index)

    def reject(self, event, reason):
        """Rejects ``event``: it goes to the dead-letter sink with ``reason``."""
        self.rejected.append(Rejection(event.index, str(reason)))


class Output:
    """A transform's output for a batch: new events, each tied to the input event it came
    from. Emit in the order of the inputs (all outputs of event 3 before any of event 4);
    an input may have zero, one or many outputs."""

    def __init__(self):
        self._values, self._value_ends = bytearray(), []
        self._keys, self._key_ends = bytearray(), []
        #: Event time of each output.
        self.timestamps = []
        #: For each output, the index of the input event it came from.
        self.origins = []
        #: The rejected input events, as :class:`Rejection`.
        self.rejected = []

    def forward(self, event):
        """Emits ``event`` unchanged."""
        self.emit(event, event.value)

    def emit(self, event, value, key=None, timestamp=None):
        """Emits a new value (bytes or str, a JSON object) for ``event``, with the event's
        key and event time unless given."""
        if not isinstance(value, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"emit takes the value as bytes or str, not {type(value).__name__} (see emit_json)")
        self._values += _bytes(value)
        self._value_ends.append(len(self._values))
        self._keys += event.key if key is None else _bytes(key)
        self._key_ends.append(len(self._keys))
        self.timestamps.append(event.timestamp if timestamp is None else timestamp)
        self.origins.append(event.index)

    def emit_json(self, event, obj, key=None, timestamp=None):
        """Emits ``obj`` (a dict) serialised as compact JSON, UTF-8, as the new value."""
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        self.emit(event, text, key, timestamp)

    def reject(self, event, reason):
        """Rejects ``event``: it goes to the dead-letter sink with ``reason``."""
        self.rejected.append(Rejection(event.index, str(reason)))

    @property
    def batch(self):
        """The events emitted so far, as a :class:`Batch`."""
        return Batch(bytes(self._values), self._value_ends, bytes(self._keys), self._key_ends, self.timestamps)

    @property
    def values(self):
        """The emitted values, as a list of bytes."""
        return [event.value for event in self.batch]

    @property
    def keys(self):
        """The emitted keys, as a list of bytes."""
        return [event.key for event in self.batch]


# ---------------------------------------------------------------------------------------
# Plugin kinds


class Filter:
    """Base class of a filter: keeps, drops or rejects events and never changes them.

    ``__init__(self, config)`` gets the stage's :class:`Config`; ``select`` is called once
    per batch."""

    def __init__(self, config):
        pass

    def select(self, batch, out):
        """Calls ``out.keep(event)`` or ``out.reject(event, reason)`` for the events to keep
        or reject, in order; the others are dropped."""
        raise NotImplementedError("a Filter defines select(self, batch, out)")


class Transform:
    """Base class of a transform: rewrites, enriches, drops or fans out events.

    ``__init__(self, config)`` gets the stage's :class:`Config`; ``process`` is called once
    per batch."""

    def __init__(self, config):
        pass

    def process(self, batch, out):
        """Calls ``out.forward``, ``out.emit`` or ``out.reject`` for the events of the batch."""
        raise NotImplementedError("a Transform defines process(self, batch, out)")


# ---------------------------------------------------------------------------------------
# What the host offers


class Level(enum.Enum):
    """Severity of a log message (the WIT ``level`` enum)."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


# The host the plugin runs on: see the invariants at the top.
_backend = None


def _host():
    if _backend is None:
        raise RuntimeError(
            "host call outside a plugin call: run the plugin through eddy_plugin.testing.MockHost"
        )
    return _backend


class _Log:
    """``eddy.log(level, message)``, ``eddy.log.info(message)``, …: writes to the host's log,
    tagged with the stage's name."""

    def __call__(self, level, message):
        _host().log(level, str(message))

    def trace(self, message):
        self(Level.TRACE, message)

    def debug(self, message):
        self(Level.DEBUG, message)

    def info(self, message):
        self(Level.INFO, message)

    def warn(self, message):
        self(Level.WARN, message)

    warning = warn

    def error(self, message):
        self(Level.ERROR, message)


log = _Log()


class _State:
    """Keyed state owned by the host (checkpointed with the job, carried across swaps).
    ``key`` must be the key of an event in the batch being processed: the host refuses
    (traps on) any other key."""

    def get(self, key, name):
        """State ``name`` of ``key``, as bytes, or None."""
        return _host().state_get(_bytes(key), name)

    def set(self, key, name, value):
        """Sets state ``name`` of ``key`` to ``value`` (bytes or str)."""
        _host().state_set(_bytes(key), name, _bytes(value))

    def delete(self, key, name):
        """Deletes state ``name`` of ``key``."""
        _host().state_delete(_bytes(key), name)


state = _State()


def lookup(table, key):
    """The row with key ``key`` (str or bytes) of the side-input table ``table`` (a JSON
    object, bytes), or None. The host traps when the pipeline declares no such table."""
    return _host().lookup(table, _bytes(key))


# ---------------------------------------------------------------------------------------
# Running a plugin (shared by the component's exports and the MockHost)


def _describe(error):
    """``<Type>: <message>`` for an exception (``<Type>`` alone without a message)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _create(cls, config):
    """Creates the plugin from its config pairs; a refusal is a :class:`ConfigError` whose
    message is what the host reports. A ConfigError's own message is passed on as it is;
    any other exception becomes ``<Type>: <message>``."""
    if isinstance(config, dict):
        config = config.items()
    conf = Config()
    for key, value in config:
        conf.setdefault(key, value)  # the first of a repeated key wins, as in the Rust SDK
    try:
        return cls(conf)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(_describe(error)) from error


def _call(method, batch, out):
    """Runs one batch call; an exception is logged (message at error level, traceback at
    debug level) and re-raised, so the call traps and the host fails the batch, quoting
    the plugin's last error log."""
    try:
        method(batch, out)
    except Exception as error:
        _host().log(Level.ERROR, _describe(error))
        _host().log(Level.DEBUG, traceback.format_exc())
        raise
    return out


# ---------------------------------------------------------------------------------------
# The component's exports


_plugin_class = None
_plugin = None
# The generated bindings, once export() found them: (host module, types module, Err).
_wit = None


class _WitHost:
    """The `host` interface of the bindings, taking this library's Level."""

    def __init__(self, host):
        self.host = host
        self.levels = {level: host.Level[level.name] for level in Level}
        self.state_get, self.state_set = host.state_get, host.state_set
        self.state_delete, self.lookup = host.state_delete, host.lookup
        self.field_numbers = host.field_numbers

    def log(self, level, message):
        self.host.log(self.levels[level], message)


def _flush_stdio():
    """Hands what the plugin printed to the host at the end of every call. (componentize-py
    0.25.1 writes stdout and stderr unbuffered; this keeps it so under a build that buffers,
    since a component never exits to flush at exit.)"""
    sys.stdout.flush()
    sys.stderr.flush()


class _LifecycleExport:
    """componentize-py's ``Lifecycle``: ``init`` creates the plugin."""

    def init(self, config):
        global _plugin
        try:
            _plugin = _create(_plugin_class, config)
        except ConfigError as error:
            raise _wit[2](str(error)) from None
        finally:
            _flush_stdio()


def _wit_batch(batch):
    return Batch(batch.values, batch.value_ends, batch.keys, batch.key_ends, batch.timestamps, batch.headers, True)


def _wit_rejections(rejected):
    return [_wit[1].Rejection(index, reason) for index, reason in rejected]


def _instance():
    if _plugin is None:
        raise RuntimeError("the host called the plugin before a successful init")
    return _plugin


class _FilterExport:
    """componentize-py's ``Filter``: ``select`` runs the plugin's select on a batch."""

    def select(self, batch):
        try:
            out = _call(_instance().select, _wit_batch(batch), Selection())
        finally:
            _flush_stdio()
        return out.kept, _wit_rejections(out.rejected)


class _TransformExport:
    """componentize-py's ``Transform``: ``process`` runs the plugin's process on a batch."""

    def process(self, batch):
        try:
            out = _call(_instance().process, _wit_batch(batch), Output())
        finally:
            _flush_stdio()
        packed = _wit[1].Batch(
            bytes(out._values), out._value_ends, bytes(out._keys), out._key_ends, out.timestamps, None
        )
        return packed, out.origins, _wit_rejections(out.rejected)


def export(cls):
    """Makes ``cls`` (a :class:`Filter` or :class:`Transform` subclass) the plugin of the
    component built from its module: binds the names componentize-py looks up in that
    module (``Lifecycle`` and ``Filter`` or ``Transform``) to this library's exports.
    Call it once, at the end of app.py (or use it as a class decorator); returns ``cls``.

    Under plain CPython (tests) it only records the class: the tests create the plugin
    through :class:`eddy_plugin.testing.MockHost`."""
    global _plugin_class, _backend, _wit
    if isinstance(cls, type) and issubclass(cls, Filter):
        kind, adapter = "Filter", _FilterExport
    elif isinstance(cls, type) and issubclass(cls, Transform):
        kind, adapter = "Transform", _TransformExport
    else:
        raise TypeError(f"export takes a subclass of eddy_plugin.Filter or eddy_plugin.Transform, not {cls!r}")
    module = sys.modules[cls.__module__]
    for name, value in (("Lifecycle", _LifecycleExport), (kind, adapter)):
        bound = getattr(module, name, None)
        # The module may import this library's base class under the same name (`from
        # eddy_plugin import Filter`): that one is replaced; anything else is the author's.
        if bound not in (None, value, Filter, Transform):
            raise TypeError(
                f"{cls.__module__} defines `{name}`, the name componentize-py looks up for the "
                f"export: rename it (the plugin class can have any other name)"
            )
        setattr(module, name, value)
    _plugin_class = cls
    try:
        # Present only while componentize-py builds the component.
        from componentize_py_types import Err
        from wit_world import exports
        from wit_world.imports import host, types
    except ImportError:
        return cls
    if not hasattr(exports, kind):
        world = "filter-plugin" if kind == "Filter" else "transform-plugin"
        raise TypeError(
            f"{cls.__name__} is a {kind}, but the world being built does not export one: build it as {world}"
        )
    _wit = (host, types, Err)
    _backend = _WitHost(host)
    return cls
