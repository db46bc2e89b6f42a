"""A real GCS server (gcp-storage-emulator, the GCS JSON API) on 127.0.0.1 for the gs:// tests.

gcsfs finds it through ``STORAGE_EMULATOR_HOST``, the variable Google's own clients read. The emulator checks
no credentials (so wrong-credential cases are tested on S3 only), and it does not serve the gRPC storage
control API that gcsfs's experimental bucket-type lookup calls; ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false``
(set in tests/conftest.py, before gcsfs is first imported) turns that lookup off.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass

from egovlpv2.dist.env import free_port
from tests.s3_server import stop_server, wait_for_port

__all__ = ["GcsServer", "start_server", "stop_server"]


@dataclass
class GcsServer:
    endpoint: str
    scheme = "gs"
    stamp = "generation"  # the field of an object's info that a rewrite changes

    def env(self, **changes: str) -> dict[str, str]:
        """The variables that point gcsfs at this server, without probing for a cloud metadata server."""
        return {"STORAGE_EMULATOR_HOST": self.endpoint, "NO_GCE_CHECK": "true", **changes}

    def filesystem(self):
        import gcsfs

        return gcsfs.GCSFileSystem(endpoint_url=self.endpoint, token="anon", skip_instance_cache=True)


def start_server() -> tuple[subprocess.Popen, GcsServer]:
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe nobody drains (see tests/s3_server.py)
    proc = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                             "--port", str(port), "--in-memory"], stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, GcsServer(f"http://127.0.0.1:{port}")
