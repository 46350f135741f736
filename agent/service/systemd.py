"""`agent run` under systemd: the notify protocol (READY, WATCHDOG, STOPPING) and the exit bound.

Both work without systemd too: without NOTIFY_SOCKET nothing is sent, and the exit guard bounds
any shutdown, whoever asked for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading

from agent.logs import event
from agent.service.pace import Pace

log = logging.getLogger("agent.service.supervisor")
EXIT_MARGIN = 5.0  # after shutdown_timeout, for closing the store, the listener and the HTTP sessions


def sd_notify(message: str) -> bool:
    """Send a datagram to systemd's notify socket, if we run under Type=notify.

    Never blocks: this runs on the event loop, and a full socket queue (a notify reader that
    stalls; net.unix.max_dgram_qlen is 10 by default) would otherwise freeze every task, the
    SIGTERM handler included. A lost WATCHDOG=1 is harmless, the next one follows soon.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.send(message.encode())
    except OSError as exc:  # BlockingIOError (queue full), ECONNREFUSED, ENOENT ...
        log.debug("sd_notify failed", extra={"fields": {"message": message, "error": str(exc)}})
        return False
    return True


async def watchdog(pace: Pace) -> None:
    """Ping systemd's watchdog at half its interval (WATCHDOG_USEC), while the service runs."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    if not usec:
        return
    while pace.running:
        sd_notify("WATCHDOG=1")  # proves the event loop runs; data problems are alerted, not restarted
        await pace.sleep(usec / 2e6)


def exit_guard(seconds: float) -> None:
    """End the process `seconds` from now whatever it is doing.

    Cancelling the tasks bounds the event loop's share of a shutdown, but not a thread: an S3 put
    in boto3's thread pool (connect and read timeouts, retries) keeps `asyncio.run` and the
    interpreter from exiting for minutes, past systemd's TimeoutStopSec. An unfinished window has
    not moved its cursor, so exiting hard costs a re-fetch, never a gap.
    """
    def expire() -> None:
        event(log, logging.ERROR, "Shutdown exceeded its bound; exiting now. Unfinished windows keep their "
              "cursors and are fetched again at the next start.", seconds=seconds)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True  # never keeps the process alive itself
    timer.start()
