"""A control plane for programs that drive the filter headless (the revocation benchmark):
started like the development stack's (SoftHSM2 token and key, SQLite, a demo org with a user,
a super-admin token and a proxy credential), described as one JSON line on stdout, and stopped
when stdin closes.

    python -m devstack.demo_control_plane STATE_DIR LOG_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .controlplane import ControlPlane


def main() -> int:
    state, logs = Path(sys.argv[1]), Path(sys.argv[2])
    cp = ControlPlane(state, logs)
    cp.init_hsm()
    public_key = cp.key_init()
    org = cp.cli("org", "create", "bench")
    user = cp.cli("user", "create", "--org", org, "bench-user")
    admin = cp.cli("token", "create", "--org", org, "--super-admin")
    proxy = cp.proxy_credential(org)
    cp.start()
    try:
        print(json.dumps({
            "url": cp.url,
            "org_id": org,
            "user_id": user,
            "admin_token": admin,
            "proxy_credential": proxy,
            "public_key_pem": public_key["public_key_pem"],
        }), flush=True)
        sys.stdin.read()
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
