//! What the pass-through baselines (the wasm guest and the dynamic module) add per request.

/// Six headers the size of certbind's other identity headers for a bound PIV card (the
/// seventh, `x-passthrough`, carries what the baseline read).
pub const LIKE_IDENTITY: [(&str, &str); 6] = [
    ("x-passthrough-fingerprint", "3f1c9a7e5b2d4068a1c3e5f7092b4d6f8a0c2e4f6a8b0d2f4a6c8e0b2d4f6a8c"),
    ("x-passthrough-subject", "CN=DOE.JANE.Q.1234567890,OU=PKI,OU=DoD,O=U.S. Government,C=US"),
    ("x-passthrough-issuer", "CN=DOD ID CA-59,OU=PKI,OU=DoD,O=U.S. Government,C=US"),
    ("x-passthrough-serial", "0a1b2c3d4e5f60718293a4b5c6d7e8f9"),
    ("x-passthrough-user", "01JD7Q3M6K2T9V4X8B5N1C0R7Z"),
    ("x-passthrough-principal", "auth:account:user:01JD7Q3M6K2T9V4X8B5N1C0R7Z"),
];
