"""Run the example with Flower's simulation engine (Ray backend).

    PYTHONPATH=.:examples python -m flower_app.run [--nodes 10]
"""

from __future__ import annotations

import argparse

from flwr.simulation import run_simulation

from flower_app import client_app, server_app


def main(nodes: int = 10) -> list[float]:
    run_simulation(
        server_app=server_app.app,
        client_app=client_app.app,
        num_supernodes=nodes,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": 2, "include_dashboard": False}},
    )
    return list(server_app.LOSSES)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nodes", type=int, default=10)
    import json

    print(json.dumps(main(ap.parse_args().nodes)))
