# The lab's two images, one build target each: `server` (server_svc, also the one-shot
# certificate step, python -m server_svc.certs) and `client` (client_svc). Build context: the
# repository root; both need kdf_lib and lab_common, and all they share is built once.
#
#   normal machine:  docker compose build     python:3.12-slim, pinned deps from PyPI
#   offline:         scripts/offline-build    BASE_IMAGE=tls12-lab/python-base:bookworm (Debian's
#                                             Python 3.11) and WHEELHOUSE=<a directory under
#                                             .offline/wheelhouse/> built on the host
#   by hand:         docker build --target server -t tls12-lab/server .
#
# Both kinds of base get the same layout: a venv at /opt/venv, the code at /app, user "app".
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS deps
# Empty: install requirements/runtime.txt from PyPI. Otherwise the name of a directory under
# .offline/wheelhouse/ holding wheels for this image's Python: pip then stays off the network.
ARG WHEELHOUSE=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
# The bracket glob makes the wheelhouse optional: COPY drops a pattern that matches nothing.
# Its wheels stay in this stage; only /opt/venv goes into the final images.
COPY requirements/runtime.txt .offline/wheelhous[e] /tmp/deps/
RUN set -eu; \
    python3 -m venv /opt/venv; \
    if [ -n "$WHEELHOUSE" ]; then \
        /opt/venv/bin/pip install --no-index --find-links "/tmp/deps/$WHEELHOUSE" -r /tmp/deps/runtime.txt; \
    else \
        /opt/venv/bin/pip install -r /tmp/deps/runtime.txt; \
    fi; \
    /opt/venv/bin/pip uninstall -y -q pip setuptools

# What both services' images hold: the venv, the user, the shared code.
FROM ${BASE_IMAGE} AS common
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# /certs/trust belongs to "app" so that a new named volume mounted there takes that owner (Docker
# copies a mount point's ownership into an empty volume); so do /certs/state, where the scaled
# stack keeps the key-encryption key of its state in Redis (docker-compose.scale.yml), and
# /certs/client, where the certificate step writes client_svc's key for mutual TLS.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app \
 && install -d -o app -g app -m 0755 /certs/trust \
 && install -d -o app -g app -m 0700 /certs/state \
 && install -d -o app -g app -m 0700 /certs/client
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY kdf_lib/ kdf_lib/
COPY lab_common/ lab_common/
RUN python -m compileall -q kdf_lib lab_common

FROM common AS server
# The key directory too, 0700: the certificate step writes the server's key there.
RUN install -d -o app -g app -m 0700 /certs/server
COPY server_svc/ server_svc/
RUN python -m compileall -q server_svc
USER app
EXPOSE 8002
CMD ["gunicorn", "-c", "server_svc/gunicorn.conf.py", "server_svc:create_app()"]

FROM common AS client
# The client only ever reads the CA certificate from /certs/trust. Its demos analyse their
# recordings with lab_analysis, which server_svc never imports.
COPY lab_analysis/ lab_analysis/
COPY client_svc/ client_svc/
RUN python -m compileall -q lab_analysis client_svc
USER app
EXPOSE 8001
CMD ["gunicorn", "-c", "client_svc/gunicorn.conf.py", "client_svc:create_app()"]
