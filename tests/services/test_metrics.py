"""GET /metrics: Prometheus counters that tell what the services did, with bounded labels."""

from __future__ import annotations

import base64

from prometheus_client.parser import text_string_to_metric_families

from lab_common.contract import HANDSHAKE, MESSAGE, METRICS, SESSION, path, route


def samples(app_client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = app_client.get(METRICS)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(all_samples, name, **labels):
    return all_samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_handshakes_and_messages_are_counted_on_both_sides(client, server):
    first = client.post(HANDSHAKE, json={"key_exchange": "ecdhe"}).get_json()
    client.post(HANDSHAKE, json={"resume": first["session_id"]})
    client.post(MESSAGE, json={"plaintext": "counted"})
    suite = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    for side in (client, server):
        seen = samples(side)
        full = {"kind": "full", "key_exchange": "ecdhe", "suite": suite, "outcome": "established"}
        assert value(seen, "tls_lab_handshakes_total", **full) == 1
        assert value(seen, "tls_lab_handshakes_total", **{**full, "kind": "resumed"}) == 1
        assert (
            value(
                seen, "tls_lab_handshake_duration_seconds_count", kind="full", key_exchange="ecdhe"
            )
            == 1
        )
        assert value(seen, "tls_lab_connections") == 2
        assert value(seen, "tls_lab_sessions") == 1
    assert value(samples(server), "tls_lab_messages_total", outcome="echoed") == 1
    assert value(samples(server), "tls_lab_message_bytes_total", direction="received") == len(
        "counted"
    )
    assert value(samples(client), "tls_lab_messages_total", outcome="delivered") == 1


def test_failures_are_counted_by_alert_code(client, server):
    result = client.post(HANDSHAKE, json={}).get_json()
    sent = client.post(MESSAGE, json={"plaintext": "x"}).get_json()["sent"]
    record = bytearray(base64.b64decode(sent["record"]))
    record[-1] ^= 1
    body = {
        "connection_id": result["connection_id"],
        "record": base64.b64encode(bytes(record)).decode(),
    }
    assert server.post(MESSAGE, json=body).status_code == 400
    server.post(MESSAGE, data="{", content_type="application/json")
    seen = samples(server)
    assert value(seen, "tls_lab_failures_total", code="bad_record_mac") == 1
    assert value(seen, "tls_lab_failures_total", code="decode_error") == 1
    assert value(seen, "tls_lab_messages_total", outcome="bad_record_mac") == 1
    assert (
        value(seen, "tls_lab_http_requests_total", endpoint=MESSAGE, method="POST", status="400")
        == 2
    )


def test_request_labels_use_route_templates_not_ids(client, server):
    result = client.post(HANDSHAKE, json={}).get_json()
    server.get(path(SESSION, result["connection_id"]))
    server.get("/no/such/path")
    text = server.get(METRICS).get_data(as_text=True)
    assert result["connection_id"] not in text
    assert f'endpoint="{route(SESSION)}"' in text
    assert 'endpoint="unmatched"' in text
