"""Request-signature verification for the fake ECS endpoint.

Real Alibaba Cloud clients sign ECS calls in one of two ways, and the fake must accept
both on the same endpoint so that old and new SDKs (and the CSI drivers built on them)
can be pointed at it unchanged:

* RPC style (``SignatureMethod=HMAC-SHA1``), sent by aliyun-python-sdk-core and the Go v1
  SDK: the signature is a query or form parameter over all other parameters.
* V3 style (``ACS3-HMAC-SHA256``), sent by the Tea/Darabonba SDKs such as
  alibabacloud-ecs20140526: the signature is in the ``Authorization`` header over a
  canonical request of method, path, query, signed headers and a body hash.

Verifying for real (rather than accepting anything) catches clients that are configured
with the wrong credentials, and a bad request is always answered with the ECS error code
a real endpoint would give, never with a server error. The verifier hands back the action,
version and parameters it checked, and only those are executed: an unsigned header cannot
turn a signed DescribeDisks into a DeleteDisk.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from zoneproof.ecs.errors import EcsError
from zoneproof.ecs.store import Store

RPC_SIGNATURE_METHOD = "HMAC-SHA1"
V3_ALGORITHM = "ACS3-HMAC-SHA256"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# strptime alone would also take "2024-1-1T0:0:0Z" and non-ASCII digits.
TIMESTAMP_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", re.ASCII)

# Headers a V3 request must both carry and sign: without them a signed request could be
# replayed (date, nonce), have its body swapped (content hash) or be turned into another
# action or version.
V3_REQUIRED_SIGNED_HEADERS = ("x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                              "x-acs-content-sha256")


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request that the signatures cover."""

    method: str  # "GET" / "POST"
    path: str  # raw path without query, e.g. "/"
    query: list[tuple[str, str]]  # decoded query pairs in order received
    form: list[tuple[str, str]]  # decoded x-www-form-urlencoded body pairs ([] otherwise)
    headers: dict[str, str]  # names lower-cased; repeated headers joined with ","
    body: bytes  # raw body


@dataclass(frozen=True)
class Verified:
    """What a good signature covers: the only action, version and parameters to execute."""

    access_key_id: str
    style: str  # "rpc" or "v3"
    action: str
    version: str | None
    params: dict[str, str]  # every parameter, common ones (Action, Signature…) included


def request_params(req: SignedRequest) -> dict[str, str]:
    """The request's parameters as the SDKs sign them: a body parameter overrides the
    query's of the same name (aliyun-python-sdk-core merges them into one map)."""
    params = dict(req.query)
    params.update(req.form)
    return params


class Verifier:
    """Checks request signatures against a fixed set of access keys. Used nonces are kept
    in ``nonces`` (the fake's database), so a replay is refused after a restart too."""

    def __init__(
        self,
        credentials: dict[str, str],
        *,
        nonces: Store | None = None,
        max_skew: float = 900.0,
        nonce_ttl: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ):
        self._credentials = dict(credentials)
        self._nonces = nonces if nonces is not None else Store()
        self._max_skew = max_skew
        self._nonce_ttl = nonce_ttl
        self._clock = clock

    def verify(self, req: SignedRequest) -> Verified:
        """Return what the signature covers; raise EcsError for anything else."""
        if req.method not in ("GET", "POST"):
            raise EcsError("UnsupportedHTTPMethod", f"This http method is not supported: {req.method!r}.")
        headers = {name.lower(): value for name, value in req.headers.items()}
        if "authorization" in headers:
            return self._verify_v3(req, headers)
        if any(key == "Signature" for key, _ in req.query + req.form):
            return self._verify_rpc(req, headers)
        raise EcsError(
            "IncompleteSignature",
            "No signature was found: expected an Authorization header or a Signature parameter.",
        )

    # --- RPC style ---------------------------------------------------------------------

    def _verify_rpc(self, req: SignedRequest, headers: dict[str, str]) -> Verified:
        params = request_params(req)
        signature = params.pop("Signature")

        access_key_id = params.get("AccessKeyId")
        if not access_key_id:
            raise EcsError("MissingAccessKeyId")
        signature_method = params.get("SignatureMethod")
        if signature_method != RPC_SIGNATURE_METHOD:
            raise EcsError(
                "IncompleteSignature",
                f"The SignatureMethod {signature_method!r} is not supported; use {RPC_SIGNATURE_METHOD}.",
            )
        nonce = params.get("SignatureNonce")
        if not nonce:
            raise EcsError("IncompleteSignature", "The SignatureNonce parameter is missing.")
        self._check_timestamp(params.get("Timestamp"), "Timestamp")
        secret = self._secret(access_key_id)

        canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()))
        string_to_sign = f"{req.method}&{_pct('/')}&{_pct(canonical)}"
        digest = hmac.new((secret + "&").encode(), _utf8(string_to_sign), hashlib.sha1).digest()
        _check_signature(base64.b64encode(digest).decode(), signature, string_to_sign)

        # The signed parameters name the action; an unsigned header may not disagree.
        action, version = params.get("Action", ""), params.get("Version")
        _agree("x-acs-action", headers, action, "Action")
        _agree("x-acs-version", headers, version, "Version")
        self._use_nonce(access_key_id, nonce)
        return Verified(access_key_id, "rpc", action, version, params)

    # --- V3 style ----------------------------------------------------------------------

    def _verify_v3(self, req: SignedRequest, headers: dict[str, str]) -> Verified:
        access_key_id, signed_names, signature = _parse_authorization(headers["authorization"])

        for name in V3_REQUIRED_SIGNED_HEADERS:
            if name not in headers or name not in signed_names:
                raise EcsError("IncompleteSignature", f"The header {name} must be present and signed.")
        for name in signed_names:
            if name not in headers:
                raise EcsError("IncompleteSignature", f"The signed header {name!r} is missing from the request.")
        nonce = headers["x-acs-signature-nonce"].strip()
        if not nonce:
            raise EcsError("IncompleteSignature", "The x-acs-signature-nonce header is empty.")
        self._check_timestamp(headers["x-acs-date"].strip(), "x-acs-date")
        secret = self._secret(access_key_id)

        # The client signs the hash it claims; make sure the body really has that hash.
        payload_hash = headers["x-acs-content-sha256"].strip()
        if payload_hash.lower() != hashlib.sha256(req.body).hexdigest():
            raise EcsError(
                "SignatureDoesNotMatch",
                "The payload hash differs from the x-acs-content-sha256 header.",
            )

        query = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(req.query, key=lambda p: p[0]))
        canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in signed_names)
        canonical_request = "\n".join(
            [req.method, req.path or "/", query, canonical_headers, ";".join(signed_names), payload_hash]
        )
        string_to_sign = f"{V3_ALGORITHM}\n{hashlib.sha256(_utf8(canonical_request)).hexdigest()}"
        expected = hmac.new(secret.encode(), _utf8(string_to_sign), hashlib.sha256).hexdigest()
        _check_signature(expected, signature, string_to_sign)

        # The signed headers name the action; a parameter may not disagree.
        params = request_params(req)
        action, version = headers["x-acs-action"].strip(), headers["x-acs-version"].strip()
        for name, value in (("Action", action), ("Version", version)):
            if params.get(name, value) != value:
                raise EcsError("InvalidParameter", f"The parameter {name} {params[name]!r} disagrees with the "
                               f"signed header x-acs-{name.lower()} {value!r}.")
        self._use_nonce(access_key_id, nonce)
        return Verified(access_key_id, "v3", action, version, {**params, "Action": action, "Version": version})

    # --- shared checks -----------------------------------------------------------------

    def _secret(self, access_key_id: str) -> str:
        secret = self._credentials.get(access_key_id)
        if secret is None:
            raise EcsError("InvalidAccessKeyId.NotFound", f"Specified access key is not found: {access_key_id!r}.")
        return secret

    def _check_timestamp(self, value: str | None, name: str) -> None:
        if not value:
            raise EcsError("InvalidTimeStamp.Format", f"The {name} is missing.")
        try:
            if not TIMESTAMP_SHAPE.fullmatch(value):
                raise ValueError(value)
            moment = calendar.timegm(time.strptime(value, TIMESTAMP_FORMAT))
        except (ValueError, OverflowError):
            raise EcsError(
                "InvalidTimeStamp.Format", f"The {name} {value!r} is not in the format YYYY-MM-DDThh:mm:ssZ."
            ) from None
        if abs(moment - self._clock()) > self._max_skew:
            raise EcsError("InvalidTimeStamp.Expired", f"The {name} {value!r} is too far from the server time.")

    def _use_nonce(self, access_key_id: str, nonce: str) -> None:
        # Called only after the signature checks out, so forged requests cannot burn nonces.
        if not self._nonces.use_nonce(access_key_id, nonce, self._clock(), self._nonce_ttl):
            raise EcsError("SignatureNonceUsed")


def _agree(header: str, headers: dict[str, str], signed: str | None, name: str) -> None:
    """Refuse an RPC request whose unsigned header names another action or version."""
    value = headers.get(header)
    if value is not None and value.strip() != (signed or ""):
        raise EcsError("InvalidParameter", f"The header {header} {value.strip()!r} disagrees with the signed "
                       f"parameter {name} {signed!r}.")


def _parse_authorization(value: str) -> tuple[str, list[str], str]:
    """Split ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..``."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != V3_ALGORITHM:
        raise EcsError(
            "IncompleteSignature", f"The signature algorithm {algorithm!r} is not supported; use {V3_ALGORITHM}."
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, _, part = item.strip().partition("=")
        if name in parts:
            raise EcsError("IncompleteSignature", f"The Authorization header repeats {name!r}.")
        parts[name] = part.strip()
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(name):
            raise EcsError("IncompleteSignature", f"The Authorization header has no {name}.")
    signed_names = [name.lower() for name in parts["SignedHeaders"].split(";")]
    if "" in signed_names:
        raise EcsError("IncompleteSignature", "The SignedHeaders list has an empty name.")
    return parts["Credential"], signed_names, parts["Signature"]


def _check_signature(expected: str, given: str, string_to_sign: str) -> None:
    # compare_digest refuses non-ASCII text, and such a signature is wrong anyway.
    if not (given.isascii() and hmac.compare_digest(expected, given)):
        # Like ECS, say what was signed: the RPC SDK compares it with its own string to
        # tell a wrong secret (same string) from a wrongly built request.
        # Both styles' strings to sign are ASCII (percent-encoded, or hex digests).
        raise EcsError("SignatureDoesNotMatch", "Specified signature is not matched with our calculation. "
                       f"server string to sign is:{string_to_sign}")


def _utf8(text: str) -> bytes:
    # surrogateescape gives back the original bytes if the HTTP layer decoded them that
    # way; anything else unencodable could never have been signed by a client.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise EcsError("SignatureDoesNotMatch", "The request contains text that is not valid UTF-8.") from None


def _pct(text: str) -> str:
    """RFC 3986 percent-encoding as both signature styles use it (space -> %20, ~ kept)."""
    return quote(_utf8(text), safe="~")
