"""The stand-in node (`FaultServer`) as a child process, for `common.StandInNode`: prints
its base URL, then reads one JSON line per change from stdin — `{"chunks": N or [...],
"delay_s": S}` sets the answer (replies "ok"), `"count"` asks how many requests came —
and stops when stdin closes."""

from __future__ import annotations

import json
import sys

from tests.bench.common import tokens
from tests.fixtures.fault_server import FaultServer


def main() -> None:
    with FaultServer() as server:
        print(server.base_url, flush=True)
        for line in sys.stdin:
            command = json.loads(line)
            if command == "count":
                print(len(server.requests), flush=True)
                continue
            chunks = command["chunks"]
            server.set_scenario("ok", chunks=tokens(chunks) if isinstance(chunks, int)
                                else chunks, delay_s=float(command.get("delay_s", 0)))
            # The recorded requests would grow with every answer of a soak.
            server.requests.clear()
            print("ok", flush=True)


if __name__ == "__main__":
    main()
