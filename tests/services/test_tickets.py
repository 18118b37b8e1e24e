"""Session tickets (RFC 5077) through both services: POST /handshake's ``resumption``, the
NewSessionTicket in server_svc's answers, the key ring's rotation, and recordings that rebuild
the transcript with the ticket in it."""

from __future__ import annotations

from kdf_lib import keylog
from kdf_lib.messages import Finished
from kdf_lib.role import Role
from lab_analysis.recorded import parse_exchanges
from lab_common.contract import HANDSHAKE, SESSION, path
from server_svc.ticket_keys import LocalTicketKeys


def handshake(client, **body):
    answer = client.post(HANDSHAKE, json=body)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def exchanges(client, connection_id):
    return client.get(path(SESSION, connection_id)).get_json()["exchanges"]


def test_a_ticket_session_resumes_from_its_ticket(client):
    full = handshake(client, resumption="ticket", key_exchange="ecdhe")
    assert full["resumption"] == "ticket"
    assert full["session_ticket"]["length"] > 0 and full["session_ticket"]["lifetime_hint"] > 0
    hello, finish = exchanges(client, full["connection_id"])
    assert hello["request"]["body"]["extensions"]["session_ticket"] == ""  # offered, empty
    assert hello["response"]["extensions"]["session_ticket"] is True
    assert "ticket" in finish["response"]["new_session_ticket"]
    resumed = handshake(client, resume=full["session_id"], resumption="ticket")
    assert resumed["resumed"] is True
    # The client made the session ID up (RFC 5077 §3.4); the server echoed it.
    assert resumed["session_id"] != full["session_id"]
    hello, _ = exchanges(client, resumed["connection_id"])
    assert hello["request"]["body"]["extensions"]["session_ticket"] not in ("", None)
    assert hello["response"]["new_session_ticket"]["ticket"]  # renewed
    again = handshake(client, resume=resumed["session_id"], resumption="ticket")
    assert again["resumed"] is True


def test_session_id_resumption_offers_no_ticket(client):
    full = handshake(client)
    assert full["resumption"] == "session_id" and full["session_ticket"] is None
    hello, finish = exchanges(client, full["connection_id"])
    assert "session_ticket" not in hello["request"]["body"]["extensions"]
    assert "new_session_ticket" not in finish["response"]
    assert handshake(client, resume=full["session_id"])["resumed"] is True


def test_a_ticket_session_can_still_resume_by_its_id(client):
    full = handshake(client, resumption="ticket")
    resumed = handshake(client, resume=full["session_id"])  # session_id resumption
    assert resumed["resumed"] is True and resumed["session_id"] == full["session_id"]


def test_a_ticket_the_server_cannot_open_gives_a_full_handshake(client, server_app):
    full = handshake(client, resumption="ticket")
    service = server_app.extensions["server_service"]
    service.tickets = LocalTicketKeys(lifetime=3600, rotation=3600)  # keys lost: a restart
    fallback = handshake(client, resume=full["session_id"], resumption="ticket")
    assert fallback["resumed"] is False and fallback["session_ticket"] is not None


def test_recordings_of_ticket_handshakes_rebuild_their_transcript(make_client_app, tmp_path):
    """From the recorded JSON and the key log alone, both Finished messages verify: the
    rebuilt transcript has the NewSessionTicket where the services put it."""
    keylog_file = tmp_path / "keylog"
    client = make_client_app(SSLKEYLOGFILE=str(keylog_file)).test_client()
    full = handshake(client, resumption="ticket")
    resumed = handshake(client, resume=full["session_id"], resumption="ticket")
    for result in (full, resumed):
        recorded = parse_exchanges(client.get(path(SESSION, result["connection_id"])).get_json())
        assert recorded.new_session_ticket is not None
        master = keylog.find_master_secret(keylog_file.read_text(), recorded.client_random)
        readers = recorded.record_readers(master)
        first = recorded.first_finished_sender
        second = first.peer
        records = {
            Role.CLIENT: recorded.client_finished_record,
            Role.SERVER: recorded.server_finished_record,
        }
        opened = {role: Finished.decode(readers[role].open(records[role])[1]) for role in Role}
        assert opened[first].verify_data == recorded.expected_verify_data(master, first)
        assert opened[second].verify_data == recorded.expected_verify_data(
            master, second, opened[first]
        )


def test_the_ring_rotates_and_keeps_the_previous_key_for_one_rotation():
    now = [1_000_000.0]
    keys = LocalTicketKeys(lifetime=7200, rotation=3600, clock=lambda: now[0])
    first = keys.ring()
    now[0] += 3600
    second = keys.ring()
    assert second.current != first.current and second.previous == (first.current,)
    now[0] += 3600
    third = keys.ring()
    assert first.current not in (third.current, *third.previous)
