"""An example handler module: named in CALLBACK_HANDLERS, imported by every worker."""

from agora_callbacks import on_event
from agora_callbacks.logs import get_logger

log = get_logger("example_handlers")


@on_event("uploaded")
def uploaded(event, key):
    """Every file list of a recording, once, in order."""
    files = [f.file_name for f in event.details.file_list or ()]
    log.info("recording uploaded", sid=event.sid, files=files, key=key)
