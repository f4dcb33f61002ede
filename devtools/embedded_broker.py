"""The embedded Celery broker of a bare machine: kombu's filesystem transport, made safe and
quick to wake.

kombu's ``_put`` creates the message file and only then writes it, while ``_get`` may pick
the file up in between and read it empty; the worker then dies on a JSONDecodeError
(celery/kombu#1551, seen once in about a dozen `make bench` runs). Here a message is written
under a name ``_get`` ignores and renamed into place, which is atomic on one filesystem.

kombu's transport looks for messages every ``polling_interval``: a guest's task waited 5 ms
on average at 10 ms, and an idle worker woke 100 times a second. On Linux the worker here
waits on inotify for a message renamed into the folder instead (a task starts ~0.5 ms after
it was sent), looking again every ``polling_interval`` only while its threads are all busy (a
finished task frees one without a file event) and every ``IDLE_LOOK_SECONDS`` otherwise.
"""

from __future__ import annotations

import os
import uuid
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

from devtools.inotify import IN_CLOSE_WRITE, IN_MOVED_TO, FolderWatch, folder_watch


class Channel(filesystem.Channel):
    # kombu's stubs give the abstract and the filesystem _put different signatures.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"
        with open(partial, "wb") as out:
            out.write(str_to_bytes(dumps(payload)))
        os.replace(partial, final)


#: While the worker could take a message, how long it waits for an inotify event before
#: looking anyway (a safety net: events are not lost, but a folder may be on NFS).
IDLE_LOOK_SECONDS = 0.5


class Transport(filesystem.Transport):
    Channel = Channel

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._watch: FolderWatch | None = None
        self._watch_tried = False  # made on the first drain: producers never need one

    def _folder_watch(self) -> FolderWatch | None:
        if not self._watch_tried:
            self._watch_tried = True
            options = self.client.transport_options if self.client is not None else None
            folder = (options or {}).get("data_folder_in")
            if folder:  # else (or off Linux) poll every polling_interval, as kombu does
                self._watch = folder_watch(str(folder), IN_MOVED_TO | IN_CLOSE_WRITE)
        return self._watch

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """kombu's loop (virtual.Transport.drain_events) with the sleep between looks
        replaced by a wait for the folder to change."""
        watch = self._folder_watch()
        if watch is None or self.cycle is None:
            return super().drain_events(connection, timeout=timeout)
        started = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                left = None if timeout is None else timeout - (monotonic() - started)
                if left is not None and left <= 0:
                    raise TimeoutError() from None
                wait = float(
                    self.polling_interval or 0.01 if self._one_is_full() else IDLE_LOOK_SECONDS
                )
                watch.wait(wait if left is None else min(wait, left))

    def _one_is_full(self) -> bool:
        """Whether a consuming channel is at its prefetch limit: an ack (no file event) will
        free it while messages wait in the folder, so look every ``polling_interval``. Asking
        instead whether any channel had room missed this: the remote-control channel always
        has, and a worker whose threads were all busy slept IDLE_LOOK_SECONDS after they
        finished, so tasks ran in waves (make bench: 8 expiry batches every 0.5-2 s)."""
        return any(
            channel._consumers and not channel.qos.can_consume() for channel in self.channels or []
        )

    def close_connection(self, connection: Any) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        super().close_connection(connection)


def use_safe_filesystem_transport() -> None:
    """Make ``filesystem://`` mean this transport in GuestGate's processes."""
    TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
