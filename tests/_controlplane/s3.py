"""A real S3-compatible server on loopback: SeaweedFS (``weed server -s3``) built from Go modules.

``S3Server`` starts one ``weed`` process (master, volume server, filer and S3 gateway) in its
own process group, on free loopback ports only, with:

* two identities from an ``-s3.config`` file: ``admin`` (every action) and ``reader`` (read and
  list only), so tests can use refused and insufficient credentials;
* no anonymous access (requests without credentials are refused);
* telemetry, the Iceberg and Lance endpoints, metrics and WebDAV off (nothing beyond loopback);
* a random SSE-S3 key-encryption key, so ``x-amz-server-side-encryption: AES256`` works;
* one bucket (``bucket``) created through ``weed shell`` before ``start`` returns.

``kill()`` sends SIGKILL to the whole group (a store dying mid-upload); ``stop()`` is the
graceful end. The binary comes from the ``s3`` artifact (``tests/s3server``, see
``build.py`` and ``tests/s3server/README.md``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

import httpx

from .server import _spawn, _stop_process, free_port

ADMIN_ACCESS_KEY = "bubu-admin"
ADMIN_SECRET_KEY = "bubu-admin-secret-0123456789"
READER_ACCESS_KEY = "bubu-reader"
READER_SECRET_KEY = "bubu-reader-secret-0123456789"


class S3ServerError(RuntimeError):
    """SeaweedFS did not start; the message carries the log tail."""


class S3Server:
    """One SeaweedFS server on loopback.

    Attributes:
        endpoint: ``http://127.0.0.1:<port>`` of the S3 gateway.
        bucket: the bucket created at start.
        access_key, secret_key: the admin identity.
    """

    def __init__(self, bin_dir: Path, *, bucket: str = "bubu-storage") -> None:
        self.weed = str(Path(bin_dir) / "weed")
        self.bucket = bucket
        self.access_key = ADMIN_ACCESS_KEY
        self.secret_key = ADMIN_SECRET_KEY
        self.workdir = Path(tempfile.mkdtemp(prefix="bubu-s3-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.master_port = 0
        self.master_address = ""
        self._finalizer = weakref.finalize(self, _cleanup, None, self.workdir)

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's combined output."""
        return self.workdir / "weed.log"

    def env(self, **extra: str) -> dict[str, str]:
        """``BUBU_*`` variables that point the SDK's s3 provider at this server (admin)."""
        env = {
            "BUBU_STORAGE_PROVIDER": "s3",
            "BUBU_STORAGE_S3_BUCKET": self.bucket,
            "BUBU_STORAGE_S3_ENDPOINT": self.endpoint,
            "BUBU_STORAGE_S3_REGION": "us-east-1",
            "BUBU_S3_ACCESS_KEY_ID": self.access_key,
            "BUBU_S3_SECRET_ACCESS_KEY": self.secret_key,
        }
        env.update(extra)
        return env

    def _write_identities(self) -> Path:
        config = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": ADMIN_ACCESS_KEY, "secretKey": ADMIN_SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                },
                {
                    "name": "reader",
                    "credentials": [
                        {"accessKey": READER_ACCESS_KEY, "secretKey": READER_SECRET_KEY}
                    ],
                    "actions": ["Read", "List"],
                },
            ]
        }
        path = self.workdir / "s3.json"
        path.write_text(json.dumps(config))
        return path

    def start(self, *, timeout: float = 60.0, create_bucket: bool = True) -> S3Server:
        """Start the server and wait until the S3 gateway answers (and the bucket exists)."""
        ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        grpc = {name: free_port() for name in ports}
        self.port, self.master_port = ports["s3"], ports["master"]
        # `weed shell` derives the gRPC port as port+10000 unless told "<port>.<grpc>".
        self.master_address = f"127.0.0.1:{ports['master']}.{grpc['master']}"
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        args = [
            self.weed,
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            "-s3",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={self._write_identities()}",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=16",
            "-metricsPort=0",
            "-master.telemetry=false",
        ]
        # SSE-S3 needs a key-encryption key; viper reads s3.sse.kek from WEED_S3_SSE_KEK.
        env = {**os.environ, "WEED_S3_SSE_KEK": secrets.token_hex(32)}
        self.proc = _spawn(args, self.log_path, env=env)
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _cleanup, self.proc, self.workdir)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise S3ServerError(f"weed exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                # Any HTTP answer (403 without credentials) means the gateway is serving.
                httpx.get(self.endpoint + "/", timeout=2.0)
                break
            if time.monotonic() > deadline:
                self.kill()
                raise S3ServerError(f"S3 gateway not up after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.2)
        if create_bucket:
            try:
                self.create_bucket(self.bucket, timeout=max(deadline - time.monotonic(), 10.0))
            except BaseException:
                self.stop()
                raise
        return self

    def create_bucket(self, name: str, *, timeout: float = 60.0) -> None:
        """Create a bucket through ``weed shell`` (retried until the master has a leader)."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                [self.weed, "shell", f"-master={self.master_address}"],
                input=f"s3.bucket.create -name {name}\n".encode(),
                capture_output=True,
                timeout=max(deadline - time.monotonic(), 5.0),
                check=False,
            )
            text = out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")
            if "created bucket" in text or "already exist" in text:
                return
            if time.monotonic() > deadline:
                raise S3ServerError(f"creating bucket {name} failed: {text[-2000:]}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def kill(self) -> None:
        """SIGKILL the whole process group (a store that dies mid-request)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the server and remove its data."""
        _stop_process(self.proc, grace=5.0)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._finalizer.detach()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cleanup(proc: subprocess.Popen[bytes] | None, workdir: Path) -> None:
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)
