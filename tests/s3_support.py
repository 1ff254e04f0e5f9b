"""A real S3 server on this machine for the object-storage tests: moto's server on a free port, reached by
s3fs (fsspec's ``s3://``) through the standard AWS settings a user sets for any S3-compatible store
(``AWS_ENDPOINT_URL`` and keys), so glasslab needs no option of its own. Skipped where moto or s3fs is
missing (``pip install -e '.[test]'`` installs both)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def s3_bucket(bucket: str) -> Iterator[str]:
    """``s3://bucket`` on a fresh local S3 server, the AWS settings naming it set for this process (and the
    processes it starts: Ray nodes, the command line) until the server stops."""
    server_module = pytest.importorskip("moto.server", reason="the S3 tests need moto[server] (the test extra)")
    s3fs = pytest.importorskip("s3fs", reason="the S3 tests need s3fs (the test extra)")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    requests = logging.getLogger("werkzeug")  # the server's log of every request
    previous_level = requests.level
    requests.setLevel(logging.WARNING)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in settings.items():
                patch.setenv(name, value)
            s3fs.S3FileSystem.clear_instance_cache()  # fsspec keeps file systems, each bound to the endpoint it met
            s3fs.S3FileSystem().mkdir(bucket)
            yield f"s3://{bucket}"
            s3fs.S3FileSystem.clear_instance_cache()
    finally:
        server.stop()
        requests.setLevel(previous_level)
