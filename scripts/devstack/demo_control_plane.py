"""A control plane for programs that drive the filter headless (the revocation benchmark):
started like the development stack's (`controlplane.start_demo`: SoftHSM2 token and key,
SQLite, a demo org with a user, a super-admin token and a proxy credential), described as one
JSON line on stdout, and stopped when stdin closes.

    python -m devstack.demo_control_plane STATE_DIR LOG_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .controlplane import start_demo


def main() -> int:
    demo = start_demo(Path(sys.argv[1]), Path(sys.argv[2]), org="bench", user="bench-user", label="bench")
    try:
        print(json.dumps({
            "url": demo.cp.url,
            "org_id": demo.org_id,
            "user_id": demo.user_id,
            "admin_token": demo.admin_token,
            "proxy_credential": demo.proxy_credential,
            "public_key_pem": demo.public_key["public_key_pem"],
        }), flush=True)
        sys.stdin.read()
    finally:
        demo.cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
