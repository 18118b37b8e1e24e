"""lab_analysis: what the lab's recordings give away, read with kdf_lib's own functions.

``recorded`` rebuilds a handshake from the JSON the services exchanged (the paths and the
``connection_id`` envelope of lab_common.contract, client_svc's ``/sessions`` view);
``diagnose`` analyses it: the mistake catalogue behind a derivation mismatch, and the key
schedule an eavesdropper replays with the server's private key. The demos and ``tls-lab`` use
it; it sits above kdf_lib, which never imports it. No I/O.
"""
