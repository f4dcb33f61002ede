"""The embedded broker's choice of how long to wait for the next message, on real kombu
channels of its transport over a real queue folder (devtools/embedded_broker.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue

from devtools.embedded_broker import Transport, use_safe_filesystem_transport


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    use_safe_filesystem_transport()
    (tmp_path / "processed").mkdir()
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "processed_folder": str(tmp_path / "processed"),
        "control_folder": str(tmp_path / "control"),
        "store_processed": False,
        "polling_interval": 0.01,
    }
    with Connection("filesystem://", transport_options=options) as conn:
        yield conn


def test_a_busy_consumer_is_looked_at_often_even_beside_one_with_room(
    connection: Connection,
) -> None:
    transport = connection.transport
    assert isinstance(transport, Transport)
    tasks = Queue("tasks", Exchange("tasks", type="direct"), routing_key="tasks")
    received: list[Message] = []

    def keep(body: Any, message: Message) -> None:
        received.append(message)

    # The tasks' channel, one message at a time (a worker with every thread busy), and a
    # second consuming channel without a limit (the worker's remote control has one).
    busy: Any = connection.channel()
    busy.basic_qos(prefetch_size=0, prefetch_count=1)
    idle: Any = connection.channel()
    Producer(busy).publish({"n": 1}, exchange=tasks.exchange, routing_key="tasks", declare=[tasks])
    Producer(busy).publish({"n": 2}, exchange=tasks.exchange, routing_key="tasks")
    Consumer(busy, queues=[tasks], callbacks=[keep]).consume()
    control = Queue("control", Exchange("control", type="direct"), routing_key="control")
    Consumer(idle, queues=[control], callbacks=[keep]).consume()

    assert not transport._one_is_full()  # room: wait for a file event
    connection.drain_events(timeout=1)
    assert len(received) == 1
    # Full: the ack that frees it makes no file event, and message 2 is waiting already.
    assert transport._one_is_full()

    received[0].ack()
    assert not transport._one_is_full()
    connection.drain_events(timeout=1)
    assert sorted(m.payload["n"] for m in received) == [1, 2]
