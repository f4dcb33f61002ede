"""The embedded Celery broker of a bare machine: kombu's filesystem transport, made safe.

kombu's ``_put`` creates the message file and only then writes it, while ``_get`` may pick
the file up in between and read it empty; the worker then dies on a JSONDecodeError
(celery/kombu#1551). Here a message is written under a name ``_get`` ignores and renamed
into place, which is atomic on one filesystem. Everything else is kombu's.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic_ns
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # kombu's stubs give the abstract and the filesystem _put different signatures.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # kombu takes the first name in sorted order: nanoseconds keep two messages sent within
        # one millisecond (kombu's own resolution) first in, first out.
        name = f"{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"
        with open(partial, "wb") as out:
            out.write(str_to_bytes(dumps(payload)))
        os.replace(partial, final)


class Transport(filesystem.Transport):
    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # A folder has no host: without this kombu says "No hostname was supplied. Reverting
        # to default 'localhost'" in every process, as if something were misconfigured.
        return {"port": self.default_port}


def use_safe_filesystem_transport() -> None:
    """Make ``filesystem://`` mean this transport in GuestGate's processes."""
    TRANSPORT_ALIASES["filesystem"] = f"{__name__}:Transport"
