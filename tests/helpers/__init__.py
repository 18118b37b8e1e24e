"""The test harness every test folder shares (the fixtures built from it are in tests/conftest.py).

- ``pki``: the run's CA and server identity, and the one builder for hand-made certificates.
- ``pair``: an in-memory client/server pair of kdf_lib's state machines, no HTTP.
- ``transport``: ``FlaskTransport``, client_svc wired to server_svc in-process, breakable.
- ``peer``: ``Peer``, a hand-driven TLS client attacking server_svc over HTTP, step by step.
- ``forge``: hand-made TLS records with the client's real keys, broken in one place.
- ``served``: the services under a real gunicorn on 127.0.0.1 ports, started and stopped by PID.
- ``rawhttp``: HTTP to those services, with exactly the bytes and headers a test chooses.
- ``slowclients``: slow and silent HTTP clients, and a prober that measures everyone else.
- ``processes``: finding the processes a test started, wherever they were re-parented.
"""
