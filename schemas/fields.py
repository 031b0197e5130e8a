"""marshmallow fields for callback values, each with a fast path.

Every field does all its checking in ``_deserialize`` (no separate validators),
so its ``fast(value)`` can give the very same answer for the values real traffic
sends (exact JSON types, numeric strings for Numbers, integer user ids) and
return ``SLOW`` for anything else, leaving marshmallow to decide. The loader
uses ``fast`` first and marshmallow whenever any field says ``SLOW``; a property
test checks both paths give equal events.

Tolerance (real traffic is looser than the page): Numbers also arrive as integral
floats or numeric strings; user ids as strings or integers (always returned as
strings); booleans as JSON booleans, 0/1 or "true"/"false".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import Enum
from typing import Any

from marshmallow import fields

from agora_callbacks.schemas.enums import member_or_value

#: Returned by ``fast`` when marshmallow must decide.
SLOW: Any = object()

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INT_STR = re.compile(r"\s*[+-]?[0-9]{1,19}\s*", re.ASCII)


class FastField(fields.Field):
    """A marshmallow field with a ``fast`` shortcut for exact-type values."""

    def fast(self, value: Any) -> Any:
        return SLOW


class Int(FastField):
    """A Number: an int, an integral float or a numeric string, within bounds.

    With ``enum``, a documented value comes back as the enum member."""

    default_error_messages = {
        "invalid": "Not a valid integer.",
        "range": "Must be between {minimum} and {maximum}.",
    }

    def __init__(self, *, minimum: int = INT64_MIN, maximum: int = INT64_MAX,
                 enum: type[Enum] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum
        self.enum = enum

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if not (isinstance(value, int)
                or (isinstance(value, float) and value.is_integer())
                or (isinstance(value, str) and _INT_STR.fullmatch(value))):
            raise self.make_error("invalid")
        number = int(value)
        if not self.minimum <= number <= self.maximum:
            raise self.make_error("range", minimum=self.minimum, maximum=self.maximum)
        return member_or_value(self.enum, number) if self.enum else number

    def fast(self, value: Any) -> Any:
        kind = type(value)
        if kind is int:
            number = value
        elif (kind is str and _INT_STR.fullmatch(value)) or (
                kind is float and value.is_integer()):
            number = int(value)
        else:
            return SLOW
        if self.minimum <= number <= self.maximum:
            return member_or_value(self.enum, number) if self.enum else number
        return SLOW


class Str(FastField):
    """A String; ``non_empty`` refuses ``""``. With ``enum``, a documented value
    comes back as the enum member."""

    default_error_messages = {"invalid": "Not a valid string.", "empty": "Must not be empty."}

    def __init__(self, *, non_empty: bool = False, enum: type[Enum] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.non_empty = non_empty
        self.enum = enum

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if self.non_empty and not value:
            raise self.make_error("empty")
        return member_or_value(self.enum, value) if self.enum else value

    def fast(self, value: Any) -> Any:
        if type(value) is str and (value or not self.non_empty):
            return member_or_value(self.enum, value) if self.enum else value
        return SLOW


class Uid(FastField):
    """A user id: documented as String, sent as a string or an integer; always a str."""

    default_error_messages = {"invalid": "Not a valid user id (string or integer)."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(int(value))
        raise self.make_error("invalid")

    def fast(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return value
        return str(value) if kind is int else SLOW


class StrOrInt(FastField):
    """Event 100's ``status``: documented as Number, sent as strings. A string (the
    enum member when documented) or an integer is kept."""

    default_error_messages = {"invalid": "Not a valid string or integer."}

    def __init__(self, *, enum: type[Enum] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enum = enum

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> Any:
        if isinstance(value, str):
            return member_or_value(self.enum, value) if self.enum else value
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        raise self.make_error("invalid")

    def fast(self, value: Any) -> Any:
        if type(value) is str:
            return member_or_value(self.enum, value) if self.enum else value
        return SLOW


class Bool(FastField):
    """A Boolean: a JSON boolean, 0/1 or "true"/"false" (any case)."""

    default_error_messages = {"invalid": "Not a valid boolean."}
    _TEXT = {"true": True, "false": False}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in self._TEXT:
            return self._TEXT[value.lower()]
        raise self.make_error("invalid")

    def fast(self, value: Any) -> Any:
        return value if type(value) is bool else SLOW


class Obj(FastField):
    """A JSON object, returned as is (the loader reads it with its own schema)."""

    default_error_messages = {"invalid": "Not a valid object."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> Any:
        if not isinstance(value, Mapping):
            raise self.make_error("invalid")
        return value

    def fast(self, value: Any) -> Any:
        return value if type(value) is dict else SLOW


class ObjList(FastField):
    """A JSON array of objects, returned as is (the loader reads each item, and skips
    and reports an item that is no object: it costs only that item)."""

    default_error_messages = {"invalid": "Not a valid array."}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise self.make_error("invalid")
        return value

    def fast(self, value: Any) -> Any:
        if type(value) is list and all(type(item) is dict for item in value):
            return value
        return SLOW
