"""More than one instance in one consumer group: partitions spread, a stopped instance's partitions
move to the others mid-ingest, nothing is lost or stored twice, and every instance answers for every
order (a cache miss falls back to the shared database)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import Topics
from tests.e2e.helpers import (
    BackgroundProducer,
    final_outcomes,
    make_input,
    stored_orders,
    wait_committed_to_end,
    wait_stored,
)
from tests.service_proc import ServiceProcess, StartService, free_port
from tests.support import wait_until

pytestmark = pytest.mark.e2e


def assigned(service: ServiceProcess) -> int:
    detail: str = service.get("/readyz").json()["components"]["consumer"]["detail"]
    return int(detail.split(maxsplit=1)[0]) if detail[:1].isdigit() else 0


@pytest.mark.parametrize("instances", [2, 3])
def test_instances_share_partitions_and_survive_one_leaving(
    instances: int,
    tmp_path: Path,
    topics: Topics,
    kafka_brokers: str,
    schema_dsn: str,
    service_env: dict[str, str],
    start_service: StartService,
) -> None:
    services = [
        start_service({**service_env, "HTTP_PORT": str(free_port())}, name=f"instance{i}")
        for i in range(instances)
    ]

    def spread() -> bool:
        counts = [assigned(s) for s in services]
        return sum(counts) == 6 and all(c > 0 for c in counts)

    wait_until(spread, timeout_s=60, what=f"6 partitions spread over {instances} instances")

    data = make_input(tmp_path, 3000, seed=60 + instances)
    producer = BackgroundProducer(data.path, topics.orders, kafka_brokers, rps=500)
    wait_stored(schema_dsn, 300, services)
    leaving = services.pop()
    assert leaving.stop() == 0  # mid-ingest: its partitions move to the others
    wait_until(lambda: sum(assigned(s) for s in services) == 6, timeout_s=60, what="partitions handed over")
    producer.finish()
    wait_committed_to_end(kafka_brokers, topics.orders, topics.group, 3000, timeout_s=120, services=services)

    assert stored_orders(schema_dsn) == data.valid  # nothing lost, nothing extra
    for service in services:  # each instance answers for every order, cached or not
        for uid in list(data.valid)[::50]:
            assert service.get(f"/api/orders/{uid}").status == 200
    for service in services:
        assert service.stop() == 0
    together: Counter[str] = final_outcomes(leaving)
    for service in services:
        together += final_outcomes(service)
    assert together["stored"] == len(data.valid)
    assert together["duplicate"] == 0  # clean hand-overs process no message twice
