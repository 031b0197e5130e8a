"""Handlers that ship with the service: the recording state (``recording_state``)."""
