"""A stand-in gateway process for crash tests: writes one batch through BatchWriter, says
"committed" the moment submit() returns (where the real gateway would send the ack), then waits
to be killed. Usage: writer_proc.py URL FIRST_SEQ COUNT"""

import asyncio
import sys

from backend.store.base import StoredReading
from backend.store.postgres import PostgresStore
from backend.writer import BatchWriter

T0 = 1_763_900_000_000


async def main(url: str, first: int, count: int) -> None:
    store = PostgresStore(url)
    await store.open(migrate=False)
    writer = BatchWriter(store)
    writer.start()
    batch = [StoredReading(vehicle_id="crash", epoch=1, seq=q, time_ms=T0 + q * 100, kind="pos",
                           lat=50.0 + q * 1e-5, lon=8.0, received_ms=T0)
             for q in range(first, first + count)]
    print("submitting", flush=True)
    await writer.submit(batch, [])
    print("committed", flush=True)
    await asyncio.sleep(3600)  # the ack would go out here; the test kills us first


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
