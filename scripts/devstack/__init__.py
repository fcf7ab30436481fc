"""certbind's development stack: the development PKI, the Envoy configurations rendered from
envoy/templates, the echo upstream, demo tokens, and the processes `make run`, the end-to-end
suite and the end-to-end benchmark start (control plane, SoftHSM2 token, Envoy)."""
