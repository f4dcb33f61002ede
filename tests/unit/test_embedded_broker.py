"""The embedded broker (devtools/embedded_broker.py) on real kombu channels of its transport
over a real queue folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue

from devtools.embedded_broker import Channel, Transport, use_safe_filesystem_transport


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


def test_the_embedded_broker_never_shows_a_half_written_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = Channel.__new__(Channel)
    channel.data_folder_out = str(tmp_path)
    readable_while_writing: list[str] = []
    real_replace = os.replace

    def watching_replace(src: str, dst: str) -> None:
        readable_while_writing.extend(n for n in os.listdir(tmp_path) if n.endswith(".msg"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    channel._put("celery", {"body": "x"})

    assert readable_while_writing == []  # while written, no file had a name a reader takes
    assert [n.endswith(".celery.msg") for n in os.listdir(tmp_path)] == [True]


def test_a_busy_consumer_gets_the_next_message_once_it_acked_even_beside_one_with_room(
    connection: Connection,
) -> None:
    assert isinstance(connection.transport, Transport)
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

    connection.drain_events(timeout=1)
    assert [m.payload["n"] for m in received] == [1]
    with pytest.raises(TimeoutError):  # full: message 2 waits for the ack
        connection.drain_events(timeout=0.1)

    received[0].ack()  # an ack writes no file: the next look must happen anyway
    connection.drain_events(timeout=1)
    assert sorted(m.payload["n"] for m in received) == [1, 2]
