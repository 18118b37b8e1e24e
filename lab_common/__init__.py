"""Web plumbing shared by client_svc and server_svc: JSON errors, strict request bodies,
structured logs and bounded in-memory stores. No protocol logic lives here (that is kdf_lib)."""
