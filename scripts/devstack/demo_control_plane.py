"""A control plane for programs that drive the filter headless (the revocation benchmark):
started like the development stack's (`controlplane.start_demo`: SoftHSM2 token and key,
SQLite, a demo org with a user, a super-admin token and a proxy credential), described as one
JSON line on stdout, and stopped when stdin closes.

    python -m devstack.demo_control_plane STATE_DIR LOG_DIR [SYNTHETIC_BINDINGS]

With SYNTHETIC_BINDINGS, that many cards of made-up fingerprints are bound to the demo user
(written straight into the SQLite database, then the service restarted to build its first
snapshot from them): the size of a real deployment, for measuring how changes travel.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

from .controlplane import start_demo


def seed_bindings(database: Path, org_id: str, user_id: str, count: int) -> None:
    rows = (
        (hashlib.sha256(i.to_bytes(8, "little")).hexdigest(), user_id, org_id, "CN=Synthetic", "CN=Synthetic CA",
         f"{i:x}", "2025-01-01T00:00:00Z", "2045-01-01T00:00:00Z", 1, "2025-01-01T00:00:00Z")
        for i in range(count)
    )
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO smart_card_links (fingerprint, user_id, org_id, subject_dn, issuer_dn, serial, "
            "not_before, not_after, enabled, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def main() -> int:
    state, logs = Path(sys.argv[1]), Path(sys.argv[2])
    demo = start_demo(state, logs, org="bench", user="bench-user", label="bench")
    if len(sys.argv) > 3 and int(sys.argv[3]) > 0:
        demo.cp.stop()
        seed_bindings(state / "certbind.db", demo.org_id, demo.user_id, int(sys.argv[3]))
        demo.cp.start(name="control-plane-seeded")
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
