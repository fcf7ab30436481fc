"""The curl commands `make run` prints are copied into a shell as they are: each admin call's
body must reach the control plane as the JSON it means."""

import json
import subprocess

from devstack import run


def test_printed_admin_bodies_are_valid_json_in_a_shell():
    text = run.instructions(8443, "Envoy https://localhost:8443", "curl -s http://127.0.0.1:9901/stats/prometheus",
                            "http://127.0.0.1:8080", "key-1")
    calls = [line.strip() for line in text.splitlines() if "curl" in line and " -d " in line]
    assert calls, "no admin call with a body in the instructions"
    for call in calls:
        # `curl` stands in as a function that prints the body it was given.
        script = 'curl() { while [ $# -gt 0 ]; do [ "$1" = -d ] && printf %s "$2"; shift; done; }\n' \
                 f'FP=00ff; A=x\n{call}\n'
        body = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
        assert json.loads(body) == {"fingerprint": "00ff"}, call
