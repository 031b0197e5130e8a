"""Per-process state that must change in a forked child: ``forks`` (the cheap pid and
fork generation the hot paths use) and the ingress's request-id generator."""

from __future__ import annotations

import os

from agora_callbacks import forks
from agora_callbacks.ingress import request_id


def _in_child(check: str) -> int:
    """Run ``check`` (an expression) in a forked child; its exit code says if it held."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if eval(check) else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_pid_and_generation_follow_forks() -> None:
    assert forks.process_id() == forks.pid == os.getpid()
    generation = forks.generation
    assert _in_child(f"forks.pid == os.getpid() != {os.getpid()} "
                     f"and forks.generation == {generation + 1}") == 0
    assert forks.generation == generation and forks.pid == os.getpid()


def test_a_forked_child_makes_other_request_ids_than_its_parent() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, " ".join(request_id.choose(None) for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    ours = {request_id.choose(None) for _ in range(100)}
    with os.fdopen(read) as pipe:
        theirs = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(ours) == len(theirs) == 100
    assert all(len(x) == 32 and int(x, 16) >= 0 for x in ours | theirs)
    assert not ours & theirs
