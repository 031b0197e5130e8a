"""One exception tree for the whole service."""


class AgoraCallbacksError(Exception):
    """Base class of every error this service raises on purpose."""


class ConfigError(AgoraCallbacksError):
    """A setting read from the environment is missing or malformed.

    The message always starts with the name of the variable at fault.
    """


class StorageUnavailable(AgoraCallbacksError):
    """Redis could not take or give data (down, timing out, erroring)."""
