"""Benchmark: the async S3 clients we considered (obstore, aiobotocore) on a real S3 server.

Starts SeaweedFS on loopback (the ``s3`` test artifact), then for each client, in its own
fresh process: import time, PUT+GET throughput on 1 KiB, 1 MiB and 64 MiB objects (the 64 MiB
one as a multipart upload of 8 MiB parts and a streamed GET), and the peak RSS of that
process. Installed size comes from the distributions' RECORD files. The decision this fed is
docs/decisions/0004-s3-client.md.

    python benchmarks/bench_s3_clients.py [--small 200] [--medium 20] [--large 2]

aiobotocore is not a dependency of bubu: install it to include it (``nox -s bench`` does).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._controlplane import build  # noqa: E402
from tests._controlplane.s3 import S3Server  # noqa: E402

CLIENTS = {
    "obstore": ("obstore",),
    "aiobotocore": ("aiobotocore", "botocore", "aiohttp", "jmespath", "multidict", "yarl"),
}

WORKER = r"""
import asyncio, json, os, resource, sys, time
t0 = time.perf_counter()
if sys.argv[1] == "obstore":
    import obstore
    from obstore.store import S3Store
else:
    import aiobotocore.session
import_s = time.perf_counter() - t0
EP, AK, SK, BUCKET = (os.environ[k] for k in ("EP", "AK", "SK", "BUCKET"))
SMALL, MEDIUM, LARGE = (int(x) for x in sys.argv[2:5])
PART = 8 << 20


async def obstore_run():
    st = S3Store(BUCKET, endpoint=EP, access_key_id=AK, secret_access_key=SK, region="us-east-1",
                 client_options={"allow_http": True}, virtual_hosted_style_request=False)

    async def put(key, data):
        if len(data) <= PART:
            await obstore.put_async(st, key, data, use_multipart=False)
        else:
            async def parts():
                view = memoryview(data)
                for i in range(0, len(view), PART):
                    yield bytes(view[i:i + PART])
            await obstore.put_async(st, key, parts(), chunk_size=PART, max_concurrency=5)

    async def get(key):
        r = await obstore.get_async(st, key)
        n = 0
        async for chunk in r.stream(min_chunk_size=1 << 20):
            n += len(chunk)
        return n

    return put, get, None


async def botocore_run():
    session = aiobotocore.session.get_session()
    ctx = session.create_client("s3", endpoint_url=EP, aws_access_key_id=AK,
                                aws_secret_access_key=SK, region_name="us-east-1")
    client = await ctx.__aenter__()

    async def put(key, data):
        if len(data) <= PART:
            await client.put_object(Bucket=BUCKET, Key=key, Body=data)
            return
        up = await client.create_multipart_upload(Bucket=BUCKET, Key=key)
        sem = asyncio.Semaphore(5)

        async def part(n, chunk):
            async with sem:
                r = await client.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                             PartNumber=n, Body=chunk)
                return {"PartNumber": n, "ETag": r["ETag"]}
        view = memoryview(data)
        done = await asyncio.gather(*(part(i // PART + 1, bytes(view[i:i + PART]))
                                      for i in range(0, len(view), PART)))
        await client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
                                               MultipartUpload={"Parts": list(done)})

    async def get(key):
        r = await client.get_object(Bucket=BUCKET, Key=key)
        n = 0
        async with r["Body"] as body:
            while chunk := await body.read(1 << 20):
                n += len(chunk)
        return n

    return put, get, ctx


async def main():
    put, get, ctx = await (obstore_run() if sys.argv[1] == "obstore" else botocore_run())
    out = {"import_s": import_s}
    sizes = (("1KiB", 1 << 10, SMALL), ("1MiB", 1 << 20, MEDIUM), ("64MiB", 64 << 20, LARGE))
    for label, size, n in sizes:
        data = os.urandom(size)
        await put(f"bench/{sys.argv[1]}/warm", data[:1024])
        await get(f"bench/{sys.argv[1]}/warm")
        t = time.perf_counter()
        for i in range(n):
            await put(f"bench/{sys.argv[1]}/{label}/{i}", data)
        put_s = time.perf_counter() - t
        t = time.perf_counter()
        for i in range(n):
            assert await get(f"bench/{sys.argv[1]}/{label}/{i}") == size
        get_s = time.perf_counter() - t
        out[label] = {"put_ops": n / put_s, "get_ops": n / get_s,
                      "put_MiBs": n * size / put_s / 2**20, "get_MiBs": n * size / get_s / 2**20}
        del data
    if ctx is not None:
        await ctx.__aexit__(None, None, None)
    out["peak_rss_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))

asyncio.run(main())
"""


def installed_mib(dists: tuple[str, ...]) -> float:
    total = 0
    for name in dists:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for f in dist.files or ():
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                total += p.stat().st_size
    return total / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--medium", type=int, default=20)
    parser.add_argument("--large", type=int, default=2)
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    server = S3Server(build.ensure(build.S3))
    server.start()
    env = {
        **os.environ,
        "EP": server.endpoint,
        "AK": server.access_key,
        "SK": server.secret_key,
        "BUCKET": server.bucket,
    }
    try:
        for client, dists in CLIENTS.items():
            try:
                md.distribution(dists[0])
            except md.PackageNotFoundError:
                print(f"{client}: not installed (pip install {client}), skipped")
                continue
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    client,
                    str(args.small),
                    str(args.medium),
                    str(args.large),
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if proc.returncode != 0:
                print(f"{client}: failed\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout)
            print(
                f"{client:12s} import {r['import_s'] * 1000:6.0f} ms"
                f"   peak RSS {r['peak_rss_MiB']:6.0f} MiB"
                f"   installed {installed_mib(dists):5.1f} MiB"
            )
            for label in ("1KiB", "1MiB", "64MiB"):
                x = r[label]
                print(
                    f"    {label:6s} PUT {x['put_ops']:8.1f} ops/s {x['put_MiBs']:7.1f} MiB/s"
                    f"   GET {x['get_ops']:8.1f} ops/s {x['get_MiBs']:7.1f} MiB/s"
                )
    finally:
        server.stop()
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
