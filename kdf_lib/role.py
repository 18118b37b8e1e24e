"""Which end of a connection a party is: RFC 5246 §6.1's ``ConnectionEnd`` (client or server).

A str enum, so the trace's JSON and the key log keep writing ``"client"`` and ``"server"``.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CLIENT = "client"
    SERVER = "server"

    @property
    def peer(self) -> Role:
        """The other end of the connection."""
        return Role.SERVER if self is Role.CLIENT else Role.CLIENT
