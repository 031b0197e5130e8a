"""Typed models declared once, validated by marshmallow, loaded fast.

A model is a frozen dataclass whose fields are declared with ``spec(...)``: the
marshmallow field class, the body key(s) it reads (the first is the documented
name, the others legacy or misspelt aliases), and whether a wrong value refuses
the whole event (``strict``) or is tolerated. ``compiled(model)`` builds the
marshmallow schema from those declarations once; ``load(...)`` turns one JSON
object into one model:

- fast path: when every present value is one its field's ``fast`` knows (the
  documented JSON type, a numeric string for a Number...), ``fast`` gives what
  marshmallow would, without marshmallow's per-field overhead (about 4 us a
  field); model instances are built by ``builder`` (slot setters, a third of the
  dataclass ``__init__``'s cost). Any other value sends the object to
- marshmallow (the source of truth), whose errors decide: an error on a strict
  field raises ``InvalidEvent`` with every error of that object; any other error
  is tolerated: that field reads ``None`` and the reasons are recorded in
  ``problems`` under the field's dotted path.

Unknown keys never fail: they are kept, deep-frozen, in the model's ``extra``.
Nested objects and arrays of objects (``child=``) are loaded the same way with
their own model, so a bad value deep in ``fileList`` costs only that value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError
from marshmallow.fields import Field

from agora_callbacks.schemas.errors import INVALID_EVENT, InvalidEvent
from agora_callbacks.schemas.fields import SLOW, FastField, ObjList

#: Switch for tests and the benchmark: False sends every object through marshmallow.
FAST_PATH = True

EMPTY: Mapping[str, Any] = MappingProxyType({})
_SPEC = "schemas.spec"
_MISSING: Any = object()


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    field: type[FastField]
    keys: tuple[str, ...]
    strict: bool
    required: bool
    child: type[Model] | None
    kwargs: Mapping[str, Any]


def spec(field: type[FastField], *keys: str, strict: bool = False, required: bool = False,
         child: type[Model] | None = None, **kwargs: Any) -> Any:
    """Declare a model field read from ``keys`` (documented name first) by ``field``."""
    return dataclasses.field(default=None, metadata={
        _SPEC: FieldSpec(field, keys, strict, required, child, kwargs)})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Model:
    """Base of every typed object: ``extra`` holds the unknown keys, read-only."""

    extra: Mapping[str, Any] = dataclasses.field(default_factory=lambda: EMPTY)


class _Base(Schema):
    class Meta:
        unknown = EXCLUDE


_REQUIRED: Any = object()


def builder(cls: type[Any]) -> Callable[[Mapping[str, Any]], Any]:
    """A constructor of the frozen slotted dataclass ``cls`` from a mapping, equal to
    ``cls(**values)`` (defaults included) at about a third of its cost: it sets the
    slots through their descriptors instead of the generated ``__init__``'s
    ``object.__setattr__`` calls. Unknown names are ignored."""
    plan = []
    for dc_field in dataclasses.fields(cls):
        if dc_field.default is not dataclasses.MISSING:
            default = dc_field.default
        elif dc_field.default_factory is not dataclasses.MISSING:
            default = dc_field.default_factory()
        else:
            default = _REQUIRED
        plan.append((dc_field.name, getattr(cls, dc_field.name).__set__, default))
    required = frozenset(name for name, _, default in plan if default is _REQUIRED)
    new = object.__new__

    def build(values: Mapping[str, Any]) -> Any:
        if not required <= values.keys():
            raise TypeError(f"{cls.__name__} needs {sorted(required - values.keys())}")
        instance = new(cls)
        get = values.get
        for name, set_slot, default in plan:
            set_slot(instance, get(name, default))
        return instance

    return build


@dataclasses.dataclass(frozen=True)
class Compiled:
    model: type[Model]
    build: Callable[[Mapping[str, Any]], Any]
    schema: Schema
    #: (body key, attribute, fast function, required), in declaration order.
    plan: tuple[tuple[str, str, Callable[[Any], Any], bool], ...]
    known: frozenset[str]
    strict_keys: frozenset[str]
    #: (attribute, body key, compiled child, many)
    children: tuple[tuple[str, str, Compiled, bool], ...]
    #: (attribute, alias attributes): the first non-None value wins.
    aliases: tuple[tuple[str, tuple[str, ...]], ...]


_COMPILED: dict[type[Model], Compiled] = {}


def compiled(model: type[Model]) -> Compiled:
    """The marshmallow schema and fast plan of ``model``, built once."""
    found = _COMPILED.get(model)
    if found is None:
        found = _COMPILED[model] = _compile(model)
    return found


def _compile(model: type[Model]) -> Compiled:
    declared: dict[str, Field] = {}
    plan = []
    strict = {"_schema"}
    children = []
    aliases = []
    for dc_field in dataclasses.fields(model):
        field_spec: FieldSpec | None = dc_field.metadata.get(_SPEC)
        if field_spec is None:
            continue
        attrs = []
        for index, key in enumerate(field_spec.keys):
            attr = dc_field.name if index == 0 else f"{dc_field.name}__{index}"
            field = field_spec.field(data_key=key, required=field_spec.required,
                                     allow_none=not field_spec.required, **field_spec.kwargs)
            declared[attr] = field
            plan.append((key, attr, field.fast, field_spec.required))
            attrs.append(attr)
            if field_spec.strict or field_spec.required:
                strict.add(key)
        if len(attrs) > 1:
            aliases.append((attrs[0], tuple(attrs[1:])))
        if field_spec.child is not None:
            many = issubclass(field_spec.field, ObjList)
            children.append((dc_field.name, field_spec.keys[0], compiled(field_spec.child), many))
    schema_cls = _Base.from_dict(declared, name=f"{model.__name__}Schema")
    return Compiled(model, builder(model), schema_cls(), tuple(plan),
                    frozenset(k for k, *_ in plan), frozenset(strict), tuple(children),
                    tuple(aliases))


def load(c: Compiled, data: Mapping[str, Any], path: str,
         problems: dict[str, list[str]]) -> Any:
    """``data`` as an instance of ``c.model``; see the module docstring."""
    return c.build(load_values(c, data, path, problems))


def load_values(c: Compiled, data: Mapping[str, Any], path: str,
                problems: dict[str, list[str]]) -> dict[str, Any]:
    """What ``load`` would pass to ``c.model``: attribute -> value, ``extra`` only
    when there are unknown keys."""
    values = _fast(c, data) if FAST_PATH and type(data) is dict else None
    if values is None:
        values = _slow(c, data, path, problems)
    for attr, alias_attrs in c.aliases:
        for alias in alias_attrs:
            value = values.pop(alias, None)
            if values.get(attr) is None and value is not None:
                values[attr] = value
    for attr, key, child, many in c.children:
        value = values.get(attr)
        if value is None:
            continue
        if many:
            values[attr] = _load_items(child, value, f"{path}{key}.", problems)
        else:
            values[attr] = load(child, value, f"{path}{key}.", problems)
    known = c.known
    extra = {k: v for k, v in data.items() if k not in known}
    if extra:
        values["extra"] = freeze(extra)
    return values


def _load_items(child: Compiled, items: Any, path: str,
                problems: dict[str, list[str]]) -> tuple[Any, ...]:
    """Each object of an array loaded as ``child``; an item that is no object is
    left out, with the reason in ``problems`` under its index."""
    loaded = []
    for i, item in enumerate(items):
        if isinstance(item, Mapping):
            loaded.append(load(child, item, f"{path}{i}.", problems))
        else:
            problems.setdefault(f"{path}{i}", []).append("Not an object.")
    return tuple(loaded)


def _fast(c: Compiled, data: dict[str, Any]) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    get = data.get
    for key, attr, fast, required in c.plan:
        value = get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                return None
            continue
        result = fast(value)
        if result is SLOW:
            return None
        values[attr] = result
    return values


def _slow(c: Compiled, data: Mapping[str, Any], path: str,
          problems: dict[str, list[str]]) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = c.schema.load(data)
    except ValidationError as err:
        messages = flatten(err.messages, path)
        errors = err.messages if isinstance(err.messages, dict) else {"_schema": err.messages}
        if any(key in c.strict_keys for key in errors):
            raise InvalidEvent(INVALID_EVENT, messages) from None
        problems.update(messages)
        valid = err.valid_data
        return dict(valid) if isinstance(valid, dict) else {}
    return {k: v for k, v in loaded.items() if v is not None}


def flatten(messages: Any, path: str) -> dict[str, list[str]]:
    """marshmallow's nested ``messages`` as ``{"dotted.path": [reasons]}``."""
    if isinstance(messages, dict):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            out.update(flatten(value, f"{path}{key}."))
        return out
    reasons = messages if isinstance(messages, list) else [messages]
    return {path.rstrip(".") or "_body": [str(r) for r in reasons]}


def freeze(value: Any) -> Any:
    """A read-only deep copy: mappings become MappingProxyType, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value
