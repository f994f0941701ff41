"""The fake ECS endpoint accepts what the real SDKs sign, and rejects everything else with
the ECS error code a real endpoint would give.

Requests are signed by the SDKs' own signing code (aliyun-python-sdk-core for RPC style,
alibabacloud_tea_openapi for V3), so these tests check the verifier against the clients
rather than against itself.
"""

from __future__ import annotations

import calendar
import hashlib
import threading
import time
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from aliyunsdkcore.auth.composer import rpc_signature_composer
from aliyunsdkcore.utils import parameter_helper
from alibabacloud_tea_openapi.utils import Utils
from darabonba.request import DaraRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.examples import examples
from zoneproof.ecs.auth import SignedRequest, Verified, Verifier
from zoneproof.ecs.errors import EcsError

AK = "LTAI5tFakeAccessKey"
SECRET = "fake-secret-0123456789abcdef"
CREDENTIALS = {AK: SECRET, "LTAI5tOtherKey": "other-secret"}
V3 = "ACS3-HMAC-SHA256"

ECS_PARAMS = {
    "Action": "DescribeDisks",
    "Version": "2014-05-26",
    "RegionId": "cn-beijing",
    "ZoneId": "cn-beijing-a",
    # characters whose encoding differs between form encoding and RFC 3986
    "DiskName": "data disk*~/+=&中文",
}


# --- building requests with the SDKs -----------------------------------------------------


def rpc_request(params=None, *, method="GET", body_params=None, ak=AK, secret=SECRET) -> SignedRequest:
    """A request as aliyun-python-sdk-core signs it: form params go in the body."""
    params = dict(ECS_PARAMS if params is None else params)
    body_params = dict(body_params or {})
    url, _ = rpc_signature_composer.get_signed_url(params, ak, secret, "JSON", method, body_params)
    body = urlencode(body_params).encode()
    headers = {"content-type": "application/x-www-form-urlencoded"} if body_params else {}
    return SignedRequest(
        method=method,
        path=urlsplit(url).path,
        query=parse_qsl(urlsplit(url).query, keep_blank_values=True),
        form=parse_qsl(body.decode(), keep_blank_values=True),
        headers=headers,
        body=body,
    )


def v3_request(
    query=None,
    *,
    form=None,
    method="POST",
    ak=AK,
    secret=SECRET,
    date=None,
    nonce=None,
    unsigned=(),
    extra_headers=None,
) -> SignedRequest:
    """A request as alibabacloud_tea_openapi signs it. Header names in ``unsigned`` are
    sent but left out of the signature, as the Go SDK does with user-agent and accept."""
    query = dict(ECS_PARAMS if query is None else query)
    body = Utils.to_form(form).encode() if form else b""
    headers = {
        "host": "ecs.cn-beijing.aliyuncs.com",
        "x-acs-version": "2014-05-26",
        "x-acs-action": query.get("Action", "DescribeDisks"),
        "user-agent": Utils.get_user_agent(None),
        "x-acs-date": date or Utils.get_timestamp(),
        "x-acs-signature-nonce": nonce or Utils.get_nonce(),
        "accept": "application/json",
        **(extra_headers or {}),
    }
    if form:
        headers["content-type"] = "application/x-www-form-urlencoded"
    payload = Utils.hash(body, V3).hex()
    headers["x-acs-content-sha256"] = payload

    sdk_request = DaraRequest()
    sdk_request.method = method
    sdk_request.pathname = "/"
    sdk_request.query = query
    sdk_request.headers = {k: v for k, v in headers.items() if k not in unsigned}
    authorization = Utils.get_authorization(sdk_request, V3, payload, ak, secret)

    return SignedRequest(
        method=method,
        path="/",
        query=list(query.items()),
        form=parse_qsl(body.decode(), keep_blank_values=True),
        headers={**headers, "authorization": authorization},
        body=body,
    )


def expect_error(verifier: Verifier, req: SignedRequest, code: str) -> EcsError:
    with pytest.raises(EcsError) as caught:
        verifier.verify(req)
    error = caught.value
    assert error.code == code, error
    assert error.status in (400, 404)
    return error


def with_query(req: SignedRequest, name: str, value: str) -> SignedRequest:
    return replace(req, query=[(k, value if k == name else v) for k, v in req.query])


def with_header(req: SignedRequest, name: str, value: str | None) -> SignedRequest:
    headers = {k: v for k, v in req.headers.items() if k != name}
    if value is not None:
        headers[name] = value
    return replace(req, headers=headers)


def signer(verified: Verified) -> tuple[str, str]:
    return verified.access_key_id, verified.style


@pytest.fixture
def verifier():
    return Verifier(CREDENTIALS)


# --- accepted requests -------------------------------------------------------------------


def test_rpc_get_signed_by_sdk_core_is_accepted(verifier):
    assert signer(verifier.verify(rpc_request())) == (AK, "rpc")


def test_rpc_post_signature_covers_query_and_form(verifier):
    req = rpc_request(
        {"Action": "CreateDisk", "Version": "2014-05-26"},
        method="POST",
        body_params={"ZoneId": "cn-beijing-a", "Size": "20", "Description": "a b*c~"},
    )
    assert ("Size", "20") in req.form
    assert signer(verifier.verify(req)) == (AK, "rpc")
    # The form is signed too: changing it breaks the signature.
    tampered = replace(req, form=[(k, "2000" if k == "Size" else v) for k, v in req.form])
    expect_error(Verifier(CREDENTIALS), tampered, "SignatureDoesNotMatch")


def test_v3_signed_by_tea_openapi_is_accepted(verifier):
    assert signer(verifier.verify(v3_request())) == (AK, "v3")


def test_v3_with_form_body_is_accepted(verifier):
    req = v3_request(
        {"Action": "CreateDisk", "Version": "2014-05-26"},
        form={"ZoneId": "cn-beijing-a", "DiskName": "x y*z~中"},
    )
    assert req.body and req.form
    assert signer(verifier.verify(req)) == (AK, "v3")


def test_v3_get_is_accepted(verifier):
    assert signer(verifier.verify(v3_request(method="GET"))) == (AK, "v3")


def test_v3_ignores_headers_that_are_not_signed(verifier):
    req = v3_request(unsigned=("user-agent", "accept"))
    assert "user-agent" not in req.headers["authorization"]
    assert signer(verifier.verify(req)) == (AK, "v3")


def test_v3_query_order_does_not_matter(verifier):
    req = v3_request()
    assert signer(verifier.verify(replace(req, query=list(reversed(req.query))))) == (AK, "v3")


def test_authorization_header_wins_over_signature_parameter(verifier):
    req = v3_request()
    req = replace(req, query=req.query + [("Signature", "whatever")])
    # The stray parameter is part of the V3 canonical query, so it must have been signed.
    expect_error(verifier, req, "SignatureDoesNotMatch")


# Parameters the RPC composer sets itself; the property is about the caller's parameters.
SDK_ADDED_PARAMS = {
    "Signature", "AccessKeyId", "SignatureMethod", "SignatureNonce", "Timestamp",
    "SignatureType", "SignatureVersion", "Format",
}


@settings(max_examples=examples(40), deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[A-Z][A-Za-z0-9.]{0,12}", fullmatch=True).filter(lambda k: k not in SDK_ADDED_PARAMS),
        st.text(max_size=20),
        max_size=6,
    )
)
def test_any_parameter_values_signed_by_either_sdk_are_accepted(params):
    verifier = Verifier(CREDENTIALS)
    assert signer(verifier.verify(rpc_request(params))) == (AK, "rpc")
    assert signer(verifier.verify(v3_request(params))) == (AK, "v3")


# --- rejected requests -------------------------------------------------------------------


def test_wrong_secret(verifier):
    expect_error(verifier, rpc_request(secret="not-the-secret"), "SignatureDoesNotMatch")
    expect_error(verifier, v3_request(secret="not-the-secret"), "SignatureDoesNotMatch")


def test_unknown_access_key(verifier):
    for req in (rpc_request(ak="LTAI5tUnknown"), v3_request(ak="LTAI5tUnknown")):
        error = expect_error(verifier, req, "InvalidAccessKeyId.NotFound")
        assert error.status == 404


@pytest.mark.parametrize("offset", [3600.0, -3600.0])
def test_stale_timestamp(offset):
    verifier = Verifier(CREDENTIALS, clock=lambda: time.time() + offset)
    expect_error(verifier, rpc_request(), "InvalidTimeStamp.Expired")
    expect_error(verifier, v3_request(), "InvalidTimeStamp.Expired")


def test_timestamp_within_skew_is_accepted():
    verifier = Verifier(CREDENTIALS, max_skew=900, clock=lambda: time.time() + 600)
    assert verifier.verify(rpc_request()).style == "rpc"
    assert verifier.verify(v3_request()).style == "v3"


@pytest.mark.parametrize(
    "garbage",
    ["yesterday", "1700000000", "2024-01-01 00:00:00", "2024-01-01T00:00:00", "2024-1-1T0:0:0Z", "2024-13-01T00:00:00Z"],
)
def test_garbage_timestamp(verifier, monkeypatch, garbage):
    # Signed by the SDK with the garbage in place, so only the format is wrong.
    monkeypatch.setattr(parameter_helper, "get_iso_8061_date", lambda: garbage)
    expect_error(verifier, rpc_request(), "InvalidTimeStamp.Format")
    expect_error(verifier, v3_request(date=garbage), "InvalidTimeStamp.Format")


def test_missing_timestamp(verifier):
    req = rpc_request()
    req = replace(req, query=[(k, v) for k, v in req.query if k != "Timestamp"])
    expect_error(verifier, req, "InvalidTimeStamp.Format")


def test_reused_nonce(verifier):
    rpc = rpc_request()
    v3 = v3_request()
    verifier.verify(rpc)
    verifier.verify(v3)
    expect_error(verifier, rpc, "SignatureNonceUsed")
    expect_error(verifier, v3, "SignatureNonceUsed")


def test_nonce_is_per_access_key(verifier):
    verifier.verify(v3_request(nonce="same-nonce"))
    verifier.verify(v3_request(nonce="same-nonce", ak="LTAI5tOtherKey", secret="other-secret"))


def test_nonce_can_be_reused_after_its_ttl():
    now = [calendar.timegm(time.gmtime())]
    verifier = Verifier(CREDENTIALS, nonce_ttl=60, clock=lambda: now[0])
    req = v3_request(nonce="n-1", date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now[0])))
    verifier.verify(req)
    now[0] += 59
    expect_error(verifier, req, "SignatureNonceUsed")
    now[0] += 2
    assert signer(verifier.verify(req)) == (AK, "v3")


def test_nonce_store_evicts_expired_entries():
    now = [calendar.timegm(time.gmtime())]
    verifier = Verifier(CREDENTIALS, nonce_ttl=10, clock=lambda: now[0])
    for i in range(50):
        date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now[0]))
        verifier.verify(v3_request(nonce=f"n-{i}", date=date))
        now[0] += 1
    assert verifier._nonces.db.execute("SELECT count(*) FROM nonces").fetchone()[0] <= 11


def test_failed_request_does_not_use_up_its_nonce(verifier):
    expect_error(verifier, v3_request(nonce="n-keep", secret="wrong"), "SignatureDoesNotMatch")
    assert signer(verifier.verify(v3_request(nonce="n-keep"))) == (AK, "v3")


def test_concurrent_replays_let_exactly_one_through(verifier):
    req = rpc_request()
    results = []

    def attempt():
        try:
            results.append(signer(verifier.verify(req)))
        except EcsError as error:
            results.append(error.code)

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count((AK, "rpc")) == 1
    assert results.count("SignatureNonceUsed") == 15


def test_tampered_parameter(verifier):
    expect_error(verifier, with_query(rpc_request(), "ZoneId", "cn-beijing-b"), "SignatureDoesNotMatch")
    expect_error(verifier, with_query(v3_request(), "ZoneId", "cn-beijing-b"), "SignatureDoesNotMatch")
    added = rpc_request()
    expect_error(verifier, replace(added, query=added.query + [("Extra", "1")]), "SignatureDoesNotMatch")


def test_tampered_signed_header(verifier):
    expect_error(verifier, with_header(v3_request(), "x-acs-action", "DeleteDisk"), "SignatureDoesNotMatch")


def test_tampered_method_or_path(verifier):
    expect_error(verifier, replace(rpc_request(), method="POST"), "SignatureDoesNotMatch")
    expect_error(verifier, replace(v3_request(), method="GET"), "SignatureDoesNotMatch")
    expect_error(verifier, replace(v3_request(), path="/other"), "SignatureDoesNotMatch")


def test_body_not_matching_content_hash(verifier):
    req = v3_request(form={"ZoneId": "cn-beijing-a"})
    error = expect_error(verifier, replace(req, body=b"ZoneId=cn-beijing-b"), "SignatureDoesNotMatch")
    assert "payload hash" in error.message


@pytest.mark.parametrize(
    "authorization",
    [
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SHA256 ",
        "ACS3-HMAC-SHA256 SignedHeaders=host;x-acs-date,Signature=abc",
        "ACS3-HMAC-SHA256 Credential=LTAI5tFakeAccessKey,Signature=abc",
        "ACS3-HMAC-SHA256 Credential=LTAI5tFakeAccessKey,SignedHeaders=host",
        "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=abc",
        "ACS3-HMAC-SHA256 Credential=a,Credential=b,SignedHeaders=host,Signature=abc",
        "ACS3-HMAC-SHA256 Credential=LTAI5tFakeAccessKey,SignedHeaders=host;;x-acs-date,Signature=abc",
        "",
    ],
)
def test_incomplete_authorization(verifier, authorization):
    expect_error(verifier, with_header(v3_request(), "authorization", authorization), "IncompleteSignature")


def test_other_algorithm_is_named(verifier):
    req = v3_request()
    auth = req.headers["authorization"].replace(V3, "ACS3-HMAC-SM3")
    error = expect_error(verifier, with_header(req, "authorization", auth), "IncompleteSignature")
    assert "ACS3-HMAC-SM3" in error.message


@pytest.mark.parametrize("name", ["x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"])
def test_required_header_left_unsigned(verifier, name):
    error = expect_error(verifier, v3_request(unsigned=(name,)), "IncompleteSignature")
    assert name in error.message


@pytest.mark.parametrize("name", ["x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256", "host"])
def test_signed_header_missing_from_request(verifier, name):
    expect_error(verifier, with_header(v3_request(), name, None), "IncompleteSignature")


def test_no_signature_at_all(verifier):
    req = rpc_request()
    req = replace(req, query=[(k, v) for k, v in req.query if k != "Signature"])
    error = expect_error(verifier, req, "IncompleteSignature")
    assert "no signature was found" in error.message.lower()


def test_rpc_missing_access_key(verifier):
    req = rpc_request()
    req = replace(req, query=[(k, v) for k, v in req.query if k != "AccessKeyId"])
    expect_error(verifier, req, "MissingAccessKeyId")


def test_rpc_other_signature_method_is_named(verifier):
    req = with_query(rpc_request(), "SignatureMethod", "HMAC-SHA256")
    error = expect_error(verifier, req, "IncompleteSignature")
    assert "HMAC-SHA256" in error.message


def test_rpc_missing_nonce(verifier):
    req = rpc_request()
    req = replace(req, query=[(k, v) for k, v in req.query if k != "SignatureNonce"])
    expect_error(verifier, req, "IncompleteSignature")


@pytest.mark.parametrize("method", ["DELETE", "PUT", "get", ""])
def test_unsupported_method(verifier, method):
    expect_error(verifier, replace(rpc_request(), method=method), "UnsupportedHTTPMethod")
    expect_error(verifier, replace(v3_request(), method=method), "UnsupportedHTTPMethod")


def test_undecodable_text_is_rejected_cleanly(verifier):
    expect_error(verifier, with_query(rpc_request(), "ZoneId", "\ud800"), "SignatureDoesNotMatch")
    expect_error(verifier, with_header(v3_request(), "user-agent", "\udcff\ud800"), "SignatureDoesNotMatch")
    expect_error(verifier, with_query(rpc_request(), "Signature", "ß\ud800"), "SignatureDoesNotMatch")


# --- no input makes it fail with anything but an ECS error -------------------------------

NOW = 1_700_000_000
NOW_TEXT = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW))
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
REQUIRED_V3 = ["host", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"]

any_text = st.one_of(
    st.text(max_size=30),
    # surrogates are what a server's surrogateescape decoding of bad UTF-8 produces
    st.text(alphabet=st.characters(categories=["Cs", "Lu", "Nd", "Po", "Zs"]), max_size=10),
)


def mostly(good: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a plausible value, so that fuzzing gets past the first checks; sometimes junk.
    (one_of would not do: Hypothesis prefers its simplest branch, not an even split.)"""
    return st.tuples(st.integers(0, 3), good, any_text).map(lambda t: t[2] if t[0] == 3 else t[1])


def maybe(*good: str) -> st.SearchStrategy[str]:
    return mostly(st.sampled_from(good))


def some_of(parts: dict) -> st.SearchStrategy[dict]:
    """All of ``parts`` drawn, then usually none or a few of them dropped."""
    return st.tuples(st.fixed_dictionaries(parts), st.sets(st.sampled_from(sorted(parts)), max_size=3)).map(
        lambda t: {k: v for k, v in t[0].items() if k not in t[1]}
    )


authorization = st.builds(
    lambda alg, cred, signed, sig, junk: f"{alg} Credential={cred},SignedHeaders={signed},Signature={sig}{junk}",
    maybe(V3),
    maybe(AK, "nobody", ""),
    # usually all the required headers, minus a few, plus odd extras
    st.tuples(
        st.sets(st.sampled_from(REQUIRED_V3), max_size=2),
        st.lists(st.sampled_from(["X-Acs-Date", "", "accept", "\ud800"]), max_size=2),
    ).map(lambda t: ";".join([h for h in REQUIRED_V3 if h not in t[0]] + t[1])),
    maybe("0" * 64),
    st.sampled_from(["", "", "", ",", ",Signature=x", ",,==", " , Credential=again"]),
)
# Each signature part is present or not, plausible or not; random extras on top.
rpc_params = some_of(
    {
        "Signature": any_text,
        "AccessKeyId": maybe(AK, "nobody"),
        "SignatureMethod": maybe("HMAC-SHA1"),
        "SignatureNonce": maybe("n-1"),
        "Timestamp": maybe(NOW_TEXT, "2023-11-14T22:13:20"),
    }
).map(lambda d: list(d.items()))
v3_headers = some_of(
    {
        "authorization": mostly(authorization),
        "host": any_text,
        "x-acs-date": maybe(NOW_TEXT),
        "x-acs-signature-nonce": maybe("n-1", " "),
        "x-acs-content-sha256": maybe(EMPTY_SHA256, EMPTY_SHA256.upper()),
    }
)
extra_pairs = st.lists(st.tuples(any_text, any_text), max_size=3)


@settings(max_examples=examples(500), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=maybe("GET", "POST"),
    path=maybe("/", ""),
    query=st.tuples(rpc_params, extra_pairs).map(lambda t: t[0] + t[1]),
    form=st.one_of(st.just([]), rpc_params, extra_pairs),
    headers=st.tuples(v3_headers, st.dictionaries(any_text, any_text, max_size=3)).map(
        lambda t: {**t[1], **t[0]}
    ),
    body=st.one_of(st.just(b""), st.binary(max_size=40)),
)
def test_random_requests_only_ever_raise_ecs_errors(method, path, query, form, headers, body):
    verifier = Verifier(CREDENTIALS, clock=lambda: NOW)
    req = SignedRequest(method=method, path=path, query=query, form=form, headers=headers, body=body)
    try:
        verifier.verify(req)
    except EcsError as error:
        assert 400 <= error.status < 500
        error.message.encode("utf-8")  # echoed input must not break rendering the error
