"""Ids of the Responses API's state, sealed to the caller they were handed to.

All callers share the relay's identity, so the Foundry project would serve any caller's
response, item or conversation to anyone who names its id. The relay never hands out the
service's ids: every id in an answer (responses, their output items, conversations) is
replaced by ``<service id>_<MAC>``, where the MAC is an HMAC-SHA256 (RFC 2104) of the
caller's object ID, tenant and the service's id under a key only the relay holds. An id a
request names is unsealed before anything goes upstream; one that was not sealed for this
caller (another user's, a forged or a made-up one) is a 404 that does not say which
(docs/design.md, "Responses state and its owner").

Ids are found in the service's JSON by the keys that carry them (``id``, ``item_id``,
``previous_response_id``, ``first_id``, ``last_id``, ``response_id``), as a string right
after an unescaped key: inside a JSON string (a model's text, a tool's arguments) quotes
are escaped, so nothing there is touched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass

from shared.caller import Caller

# 96 bits of MAC, as 24 hex digits: a forger has 2^-96 odds per try.
_MAC_BYTES = 12
_MAC_HEX = 2 * _MAC_BYTES
_ID_VALUES = re.compile(rb'(?<!\\)"(id|item_id|previous_response_id|first_id|last_id|response_id)"(\s*:\s*)"([^"\\]{1,200})"')
_SEALED_TAIL = re.compile(f"[0-9a-f]{{{_MAC_HEX}}}")
# A "message" member of a JSON object (not text inside a string: quotes there are escaped).
_MESSAGE_VALUES = re.compile(rb'(?<!\\)"message"(\s*:\s*)"((?:[^"\\]|\\.)*)"')
# What a message the relay cannot read as a JSON string becomes: it may name ids, and it is not the relay's to guess.
_UNREADABLE_MESSAGE = b"The service's message could not be read."
# An id of the service's in free text (``resp_67cc...``, ``msg_...``), sealed or not.
_TEXT_ID = re.compile(f"(?<![0-9A-Za-z_])[a-z]{{2,8}}_[0-9A-Za-z]{{16,}}(?:_[0-9a-f]{{{_MAC_HEX}}})?(?![0-9A-Za-z_])")


@dataclass(frozen=True)
class Owner:
    """Whose ids these are: an object ID and its tenant, lower-case."""

    object_id: str
    tenant_id: str

    @classmethod
    def of(cls, caller: Caller) -> Owner:
        return cls(caller.principal.object_id.lower(), caller.principal.tenant_id.lower())


class IdSeal:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, owner: Owner, service_id: str) -> str:
        message = f"{owner.object_id}|{owner.tenant_id}|{service_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES].hex()

    def seal(self, owner: Owner, service_id: str) -> str:
        return f"{service_id}_{self._mac(owner, service_id)}"

    def unseal(self, owner: Owner, sealed: str) -> str | None:
        """The service's id inside ``sealed``, or None when ``sealed`` was not sealed for ``owner``."""
        service_id, _, mac = sealed.rpartition("_")
        if not service_id or not _SEALED_TAIL.fullmatch(mac):
            return None
        return service_id if hmac.compare_digest(mac, self._mac(owner, service_id)) else None

    def for_owner(self, owner: Owner) -> OwnerSeal:
        return OwnerSeal(self, owner)


class OwnerSeal:
    """One request's sealing: one caller's ids, each sealed once (a stream names its items in every event)."""

    def __init__(self, seal: IdSeal, owner: Owner) -> None:
        self._seal, self.owner = seal, owner
        self._sealed: dict[bytes, bytes] = {}
        self._named: dict[str, str] = {}

    def unseal(self, sealed: str) -> str | None:
        service_id = self._seal.unseal(self.owner, sealed)
        if service_id is not None:
            self._named[service_id] = sealed
        return service_id

    def seal_text(self, text: str) -> str:
        """``text`` (a message of the service's) with the ids this request named sealed as the caller sent them.

        Any other id of the service's shape is replaced by ``<id>``: the relay never hands out an id it
        did not seal, and sealing one it was not given would make it a way to obtain seals.
        """
        return _TEXT_ID.sub(self._text_id, text)

    def seal_messages(self, data: bytes) -> bytes:
        """``data`` (JSON, or events of JSON) with :meth:`seal_text` applied to every ``message`` member."""
        return _MESSAGE_VALUES.sub(self._sealed_message, data)

    def _sealed_message(self, match: re.Match[bytes]) -> bytes:
        """The message read as the JSON string it is (an escape such as ``\u0027`` before an id would hide it), sealed."""
        colon, raw = match.groups()
        try:
            text = json.loads(b'"' + raw + b'"', strict=False)
        except ValueError:
            return b'"message"' + colon + b'"' + _UNREADABLE_MESSAGE + b'"'
        sealed = self.seal_text(text)
        if sealed == text:
            return match.group()
        return b'"message"' + colon + json.dumps(sealed).encode()

    def _text_id(self, match: re.Match[str]) -> str:
        token = match.group()
        if token in self._named:
            return self._named[token]
        handed_out = self._sealed.get(token.encode())
        if handed_out is not None:
            return handed_out.decode()  # an id this answer hands the caller, sealed, elsewhere
        if not any(char.isdigit() for char in token) or self.unseal(token) is not None:
            return token  # a word with an underscore, or an id already sealed for this caller
        return "<id>"

    def seal_json(self, data: bytes) -> bytes:
        """``data`` (JSON, or server-sent events of JSON) with every id the service gave sealed for the owner."""
        return _ID_VALUES.sub(self._sealed_match, data)

    def _sealed_match(self, match: re.Match[bytes]) -> bytes:
        key, colon, value = match.groups()
        sealed = self._sealed.get(value)
        if sealed is None:
            sealed = self._sealed[value] = self._seal.seal(self.owner, value.decode()).encode()
        return b'"' + key + b'"' + colon + b'"' + sealed + b'"'
