"""Run the stand-in controllers for one namespace until SIGTERM/Ctrl-C.

python -m tests._standins --kubeconfig /path/admin.kubeconfig --namespace bench
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl

import httpx
import yaml

from tests._standins import StandIns


def _admin_http(kubeconfig: str) -> httpx.AsyncClient:
    with open(kubeconfig, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    cluster = cfg["clusters"][0]["cluster"]
    user = cfg["users"][0]["user"]
    ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
    headers = {}
    if user.get("client-certificate"):
        ctx.load_cert_chain(user["client-certificate"], user["client-key"])
    if user.get("token"):
        headers["Authorization"] = f"Bearer {user['token']}"
    # HTTP/1.1: with HTTP/2 (one connection for the three watches and all writes) httpx stalled
    # some triggers for a minute under the benchmark's load.
    return httpx.AsyncClient(base_url=cluster["server"], verify=ctx, headers=headers, timeout=30)


async def main(kubeconfig: str, namespace: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with _admin_http(kubeconfig) as http, StandIns(kubeconfig, http, namespace):
        print(f"stand-ins running in namespace {namespace}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests._standins")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.kubeconfig, args.namespace))
