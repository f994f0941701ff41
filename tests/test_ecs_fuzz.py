"""Fuzzing the fake ECS over real HTTP with malformed requests.

Every answer must be a documented ECS error (a 4xx whose status is the one ``CATALOG``
gives its code, with exactly the five ECS error keys), or a 200 for a request that
happens to be valid: never a 5xx, a hang or a dropped connection, and the server must
keep serving afterwards. Two generators:

* signed: requests signed properly in RPC style (by aliyun-python-sdk-core's own signer)
  so that they get past authentication and reach the actions with malformed content;
* raw: garbage on the wire (methods, targets, headers, bodies, Content-Length values)
  built byte by byte, because http.client refuses to send much of it.

No faults are injected: faults answer 5xx on purpose. Service bugs that the fuzzing found
are pinned down as explicit tests at the end of the file.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import socket
import time
import traceback
from urllib.parse import quote, urlencode, urlsplit

import pytest
from aliyunsdkcore.auth.composer.rpc_signature_composer import get_signed_url
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ecs_clients import SDKS
from tests.examples import examples
from zoneproof.ecs.actions import ACTIONS, API_VERSION, COMMON
from zoneproof.ecs.backend import EcsConfig
from zoneproof.ecs.catalog import CATEGORIES, PERFORMANCE_LEVELS
from zoneproof.ecs.errors import CATALOG
from zoneproof.ecs.http import MAX_BODY
from zoneproof.ecs.server import DEFAULT_CREDENTIALS, EcsServer

REGION = "cn-beijing"
ZONES = ("cn-beijing-a", "cn-beijing-b", "cn-beijing-c")
INSTANCES = {"i-a1": ZONES[0], "i-a2": ZONES[0], "i-b1": ZONES[1]}
KEY_ID, SECRET = next(iter(DEFAULT_CREDENTIALS.items()))
ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}
# Codes that mean the signature was refused: a properly signed request must never get one.
AUTH_CODES = {"MissingAccessKeyId", "InvalidAccessKeyId.NotFound", "IncompleteSignature", "SignatureDoesNotMatch",
              "InvalidTimeStamp.Format", "InvalidTimeStamp.Expired", "SignatureNonceUsed"}
TIMEOUT = 10  # seconds; any single answer taking longer counts as a hang
FORM = "application/x-www-form-urlencoded"

FUZZ = settings(deadline=None, database=None,  # no example database written into the tree
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- the server under test
class _ServerErrors(logging.Handler):
    """Collects what the server logs as errors, to show with a failing example."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.entries: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The message holds the whole request path, which can be kilobytes of junk.
        trace = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
        self.entries.append(f"{record.getMessage()[:300]}\n{trace}")


@pytest.fixture(scope="module")
def server():
    srv = EcsServer(EcsConfig(region=REGION, zones={z: tuple(CATEGORIES) for z in ZONES})).start()
    errors = _ServerErrors()
    logger = logging.getLogger("zoneproof.ecs")
    logger.addHandler(errors)
    srv.errors = errors
    with srv.store.transaction() as db:
        for instance_id, zone in INSTANCES.items():
            srv.backend.register_instance(db, instance_id, zone)
    srv.disk_ids = [_create_disk(srv, zone) for zone in ZONES for _ in range(3)]  # for the fuzzer to aim at
    assert srv.faults.list() == []
    try:
        yield srv
    finally:
        logger.removeHandler(errors)
        srv.stop()


def _create_disk(srv: EcsServer, zone: str) -> str:
    status, doc = check(srv, *send_signed(srv, "GET", {"Action": "CreateDisk", "Version": API_VERSION,
                                                       "RegionId": REGION, "ZoneId": zone, "Size": "20"}))
    assert status == 200, doc
    return doc["DiskId"]


def assert_still_serving(srv: EcsServer) -> None:
    assert srv.faults.list() == [], "the fuzzing must not have injected faults"
    for sdk_class in SDKS:
        sdk = sdk_class(srv.endpoint, KEY_ID, SECRET, REGION)
        assert sdk.call("DescribeRegions")["Regions"]["Region"][0]["RegionId"] == REGION
        assert sdk.call("CreateDisk", RegionId=REGION, ZoneId=ZONES[0], DiskCategory="cloud_essd", Size=20)["DiskId"]


# ---------------------------------------------------------------- sending and checking
Answer = tuple[int, str, bytes]  # status, Content-Type, body


def send_signed(srv: EcsServer, method: str, params: dict[str, str],
                body_params: dict[str, str] | None = None) -> Answer:
    """Sign like aliyun-python-sdk-core (body parameters are signed too) and send."""
    body_params = body_params or {}
    url, _ = get_signed_url(dict(params), KEY_ID, SECRET, "JSON", method, dict(body_params))
    body = urlencode(body_params).encode()
    headers = {"Content-Type": FORM} if body_params else {}
    srv.errors.entries.clear()  # what the server logs from here on belongs to this request
    conn = http.client.HTTPConnection(*_host_port(srv), timeout=TIMEOUT)
    try:
        conn.request(method, url, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    except (OSError, http.client.HTTPException) as err:
        _fail_transport(srv, err, f"{method} {url}")
    finally:
        conn.close()


def send_raw(srv: EcsServer, request: bytes, method: str) -> Answer:
    """Write the request bytes as they are; read the answer with http.client."""
    srv.errors.entries.clear()
    try:
        with socket.create_connection(_host_port(srv), timeout=TIMEOUT) as sock:
            sock.sendall(request)
            resp = http.client.HTTPResponse(sock, method=method)
            resp.begin()
            return resp.status, resp.getheader("Content-Type", ""), resp.read()
    except (OSError, http.client.HTTPException) as err:
        _fail_transport(srv, err, repr(request[:300]))


def _host_port(srv: EcsServer) -> tuple[str, int]:
    host, port = srv.endpoint.rsplit(":", 1)
    return host, int(port)


def _fail_transport(srv: EcsServer, err: Exception, what: str):
    time.sleep(0.2)  # let the server thread finish logging its side of the story
    kind = "hang" if isinstance(err, TimeoutError) else "dropped connection"
    pytest.fail(f"{kind} ({err!r}) on {what}\nserver errors:\n" + "\n".join(srv.errors.entries[-3:]))


def check(srv: EcsServer, status: int, ctype: str, body: bytes) -> tuple[int, dict]:
    """Assert the answer is a 200 or a documented ECS 4xx; return (status, document)."""
    logged = "\n".join(srv.errors.entries[-3:])
    assert status < 500, f"server error {status}: {body[:500]!r}\nserver errors:\n{logged}"
    assert ctype.startswith("application/json"), (status, ctype, body[:300])
    doc = json.loads(body)
    assert isinstance(doc, dict) and doc.get("RequestId"), doc
    if status != 200:
        assert 400 <= status <= 499, (status, doc)
        assert set(doc) == ERROR_KEYS, doc
        assert doc["Code"] in CATALOG, f"undocumented code: {doc}"
        if status == 411:  # the HTTP layer's own refusal of a body framed without Content-Length
            assert "Transfer-Encoding" in doc["Message"], doc
        else:
            assert CATALOG[doc["Code"]][0] == status, f"{doc['Code']} answered with {status}, CATALOG says " \
                                                      f"{CATALOG[doc['Code']][0]}"
    assert not srv.errors.entries, logged
    return status, doc


# ---------------------------------------------------------------- strategies: signed requests
junk = st.text(max_size=40)
ints = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.integers(min_value=2**63 - 1, max_value=10**40).map(str),  # past SQLite's integer range
    st.sampled_from(["9" * 5000, "-0", "1e3", " 7 ", "0x10", "1_000", "\u0663", "\u00b2", "NaN", ""]),
    junk)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | junk,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(junk, inner, max_size=3),
                           max_leaves=10)


def id_lists(known: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """JSON id lists: right, of the wrong types, too long, too deep, or not JSON at all."""
    return st.one_of(
        st.lists(known | junk, max_size=5).map(json.dumps),
        st.lists(st.just("d-x"), min_size=101, max_size=102).map(json.dumps),  # over the limit of 100
        json_values.map(json.dumps),
        st.sampled_from(["", "[", "]", "null", '"d-1"', "{}", "[1, 2]", '["a",]', "[[\"d-1\"]]"]),
        st.sampled_from([10, 1000, 5000]).map(lambda depth: "[" * depth + "]" * depth),
        junk)


def next_tokens() -> st.SearchStrategy[str]:
    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode()

    return st.one_of(st.integers(-10**6, 10**30).map(lambda n: b64(f"o:{n}")),
                     junk.map(b64), st.binary(max_size=12).map(lambda b: base64.urlsafe_b64encode(b).decode()),
                     st.sampled_from(["o:5", "====", "b:1", "%%"]), junk)


def api_params(srv: EcsServer) -> dict[str, st.SearchStrategy[str]]:
    disk_ids = st.sampled_from(srv.disk_ids + ["d-doesnotexist", "d-", "i-a1"]) | junk
    instance_ids = st.sampled_from(list(INSTANCES) + ["i-nobody", "i-", "d-x"]) | junk
    return {
        "RegionId": st.sampled_from([REGION, "cn-hangzhou", "CN-BEIJING", " cn-beijing"]) | junk,
        "ZoneId": st.sampled_from([*ZONES, "cn-beijing-z", "cn-hangzhou-a"]) | junk,
        "DiskCategory": st.sampled_from([*CATEGORIES, "cloud", "CLOUD_SSD"]) | junk,
        "Category": st.sampled_from([*CATEGORIES, "all"]) | junk,
        "PerformanceLevel": st.sampled_from([*PERFORMANCE_LEVELS, "PL9", "pl1"]) | junk,
        "Size": ints, "NewSize": ints, "PageNumber": ints, "PageSize": ints, "MaxResults": ints,
        "NextToken": next_tokens(),
        "Encrypted": st.sampled_from(["true", "false", "True", "1", "yes"]) | junk,
        "MultiAttach": st.sampled_from(["Enabled", "Disabled", "enabled"]) | junk,
        "Type": st.sampled_from(["online", "offline", "Online"]) | junk,
        "DestinationResource": st.sampled_from(["Zone", "DataDisk", "SystemDisk", "InstanceType", "Disk"]) | junk,
        "Status": st.sampled_from(["Available", "In_use", "Creating"]) | junk,
        "DiskId": disk_ids, "InstanceId": instance_ids,
        "DiskIds": id_lists(disk_ids), "InstanceIds": id_lists(instance_ids),
        "DiskName": junk, "Description": junk, "KMSKeyId": junk, "ClientToken": junk,
    }


# N must be a decimal from 1 to 20; try the near misses, and digits that are not ASCII.
tag_indexes = st.one_of(st.integers(-3, 25).map(str),
                        st.sampled_from(["", "01", "1.5", "x", " 1", "\u0663", "\u00b2", "\uff11", "1" * 30]),
                        st.text(max_size=3))
tag_params = st.tuples(st.builds(lambda n, part: f"Tag.{n}.{part}", tag_indexes,
                                 st.sampled_from(["Key", "Value", "key", "", "Key.x"])), junk)
# A parameter name the signer adds itself would be signed with its value, not ours.
random_names = st.text(max_size=20).filter(lambda name: name not in COMMON and name != "Signature")


# The parameters each action reads, so that most junk lands where it is parsed.
ACTION_PARAMS = {
    "CreateDisk": ["RegionId", "ZoneId", "DiskCategory", "Size", "PerformanceLevel", "DiskName", "Description",
                   "Encrypted", "KMSKeyId", "MultiAttach", "ClientToken"],
    "DeleteDisk": ["DiskId"], "AttachDisk": ["DiskId", "InstanceId"], "DetachDisk": ["DiskId", "InstanceId"],
    "DescribeDisks": ["RegionId", "ZoneId", "DiskIds", "InstanceId", "Category", "Status", "DiskName",
                      "PageNumber", "PageSize", "MaxResults", "NextToken"],
    "ResizeDisk": ["DiskId", "NewSize", "Type"],
    "DescribeInstances": ["RegionId", "ZoneId", "InstanceIds", "PageNumber", "PageSize", "MaxResults", "NextToken"],
    "DescribeAvailableResource": ["RegionId", "ZoneId", "DestinationResource"],
    "DescribeRegions": [], "DescribeZones": ["RegionId"],
}


def valid_params(srv: EcsServer) -> dict[str, st.SearchStrategy[dict[str, str]]]:
    """Per action, parameters that make a valid call: the fuzzer spoils some of them."""
    disk, instance = st.sampled_from(srv.disk_ids), st.sampled_from(sorted(INSTANCES))
    region = {"RegionId": st.just(REGION)}
    return {action: st.fixed_dictionaries(fields) for action, fields in {
        "CreateDisk": {**region, "ZoneId": st.sampled_from(ZONES), "DiskCategory": st.sampled_from(sorted(CATEGORIES)),
                       "Size": st.integers(20, 32768).map(str)},
        "DeleteDisk": {"DiskId": disk}, "AttachDisk": {"DiskId": disk, "InstanceId": instance},
        "DetachDisk": {"DiskId": disk, "InstanceId": instance}, "DescribeDisks": region,
        "ResizeDisk": {"DiskId": disk, "NewSize": st.integers(21, 32768).map(str)},
        "DescribeInstances": region, "DescribeAvailableResource": region, "DescribeRegions": {},
        "DescribeZones": region,
    }.items()}


@st.composite
def signed_requests(draw, srv: EcsServer):
    known, valid = api_params(srv), valid_params(srv)
    real = draw(st.integers(0, 9)) < 8  # mostly real actions, so that the junk reaches their parsing
    action = draw(st.sampled_from(sorted(ACTIONS)) if real else st.one_of(junk, st.none()))
    params = {}
    if action in valid:
        params = {k: v for k, v in draw(valid[action]).items() if draw(st.integers(0, 5))}  # some go missing
    names = st.sampled_from(sorted(known))
    if ACTION_PARAMS.get(action):
        names = st.sampled_from(ACTION_PARAMS[action]) | names
    pair = st.one_of(names.flatmap(lambda name: st.tuples(st.just(name), known[name])),
                     tag_params, st.tuples(random_names, junk | ints))
    params.update(draw(st.lists(pair, max_size=6)))
    if action is not None:
        params["Action"] = action
    version = draw(st.sampled_from(["valid"] * 4 + ["missing", "junk"]))
    if version != "missing":
        params["Version"] = API_VERSION if version == "valid" else draw(junk)
    method = draw(st.sampled_from(["GET", "POST"]))
    body_params = {}
    if method == "POST":  # the SDK's way: some parameters in a form body, signed along
        body_params = {k: params.pop(k) for k in list(params) if draw(st.booleans())}
    return method, params, body_params


# ---------------------------------------------------------------- strategies: raw requests
def reaches_admin(target: bytes) -> bool:
    """Whether the server would route the target to /_admin/ (out of bounds for the fuzzer)."""
    path = target.decode("latin-1")
    if path.startswith("//"):  # http.server folds leading slashes
        path = "/" + path.lstrip("/")
    try:
        return urlsplit(path).path.startswith("/_admin/")
    except ValueError:
        return False


# Target bytes without ASCII whitespace or controls, which would break the request line for
# any HTTP server (bytes 0x80-0xFF stay: the server reads the line as Latin-1).
target_bytes = st.binary(max_size=30).map(lambda b: bytes(c for c in b if c > 0x20 and c != 0x7F))
query_parts = st.one_of(
    st.sampled_from([b"Action=DescribeDisks", b"Action=", b"Version=2014-05-26", b"RegionId=cn-beijing",
                     b"Signature=abc%3D", b"SignatureMethod=HMAC-SHA1", b"SignatureNonce=1", b"AccessKeyId=" +
                     KEY_ID.encode(), b"AccessKeyId=NOPE", b"Timestamp=2024-01-01T00:00:00Z", b"Timestamp=now",
                     b"%ff", b"%zz", b"%", b"a=%c3%28", b"b=%ed%a0%80", b"%e4%b8", b"=", b"&&", b"Signature",
                     b"DiskIds=%5B1%5D", "DiskName=\u00e9".encode("latin-1"), b"x=\xff\xfe"]),
    target_bytes)
targets = st.builds(
    lambda prefix, parts: prefix + b"&".join(parts),
    st.sampled_from([b"/?", b"/", b"", b"//?", b"/x/y?", b"*", b"?", b"/_admin?", b"http://127.0.0.1/?",
                     b"http://[/?", b"a://]?", b"//[?", b"%2F_admin/faults?", b"/..?"]) | target_bytes,
    st.lists(query_parts, max_size=6),
).filter(lambda t: t and not reaches_admin(t))

latin1_text = st.text(st.characters(max_codepoint=0xFF, blacklist_characters="\r\n"), max_size=60)
now_stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
V3_SIGNED = "x-acs-date;x-acs-signature-nonce;x-acs-content-sha256"
authorizations = st.one_of(
    st.builds(lambda algorithm, credential, signed, signature:
              f"{algorithm} Credential={credential},SignedHeaders={signed},Signature={signature}",
              st.sampled_from(["ACS3-HMAC-SHA256", "ACS3-HMAC-SHA1", ""]), st.sampled_from([KEY_ID, "NOPE", ""]),
              st.sampled_from([V3_SIGNED, V3_SIGNED + ";host", "x-acs-date", "", ";", "a;;b", "X-ACS-DATE"]),
              st.sampled_from(["00", "", "\u00e9", "0" * 64])),
    st.sampled_from(["ACS3-HMAC-SHA256", "ACS3-HMAC-SHA256 ", "Bearer abc", f"ACS3-HMAC-SHA256 Credential={KEY_ID},"
                     f"Credential={KEY_ID}", "ACS3-HMAC-SHA256 ,,,=,=", "ACS3-HMAC-SHA256 Credential"]),
    latin1_text)
# Known headers get values that mean something to the server; others get anything.
known_headers = {
    "Authorization": authorizations,
    "x-acs-action": st.sampled_from(sorted(ACTIONS)) | latin1_text,
    "x-acs-version": st.just(API_VERSION) | latin1_text,
    "x-acs-date": st.sampled_from([now_stamp, "2024-01-01T00:00:00Z", "9999-99-99T99:99:99Z",
                                   "0000-01-01T00:00:00Z", "2024-1-1T0:0:0Z"]) | latin1_text,
    "x-acs-signature-nonce": latin1_text,
    "x-acs-content-sha256": st.sampled_from([hashlib.sha256(b"").hexdigest(), "UNSIGNED-PAYLOAD"]) | latin1_text,
    "Content-Type": st.sampled_from([FORM, FORM + "; charset=utf-8", "application/json", "text/plain"]) | latin1_text,
    "Connection": st.sampled_from(["close", "keep-alive", "upgrade"]),
    "Expect": st.sampled_from(["100-continue", "nothing"]),
    "Transfer-Encoding": st.sampled_from(["chunked", "gzip"]),
    "Accept": latin1_text, "Host": latin1_text,
}
header_pairs = st.one_of(
    st.sampled_from(sorted(known_headers)).flatmap(lambda name: st.tuples(st.just(name), known_headers[name])),
    st.tuples(st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~",
                      min_size=1, max_size=20), latin1_text),
).filter(lambda pair: pair[0].lower() != "content-length")  # sent separately, below
bodies = st.one_of(
    st.binary(max_size=300),
    st.lists(query_parts, max_size=6).map(b"&".join),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"\xff\xfe\xfd", b"a=\xc3\x28", b"Action=DescribeRegions&Signature=x", b"%", b"0\r\n\r\n"]))


def _not_a_number(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return text.strip() != ""  # an empty Content-Length counts as absent
    return False


@st.composite
def raw_requests(draw):
    method = draw(st.sampled_from(["GET", "POST"] * 3 + ["PUT", "DELETE", "PATCH"]))
    target = draw(targets)
    body = draw(bodies)
    headers = [("Host", "127.0.0.1")]
    # Without an action nothing is checked further, so name one most of the time.
    action = draw(st.sampled_from(sorted(ACTIONS)) | latin1_text)
    where = draw(st.sampled_from(["query", "header", "nowhere"]))
    if where == "query":
        target += (b"&" if b"?" in target else b"?") + b"Action=" + quote(action).encode()
    elif where == "header":
        headers.append(("x-acs-action", action))
    if draw(st.booleans()):  # V3-shaped: everything the verifier looks for, but a forged signature
        headers += [("Authorization", f"ACS3-HMAC-SHA256 Credential={KEY_ID},SignedHeaders={V3_SIGNED},"
                                      f"Signature={draw(st.sampled_from(['0' * 64, 'zz', '']))}"),
                    ("x-acs-date", draw(st.just(now_stamp) | known_headers["x-acs-date"])),
                    ("x-acs-signature-nonce", draw(latin1_text)),
                    ("x-acs-content-sha256", draw(st.just(hashlib.sha256(body).hexdigest()) | latin1_text))]
    headers += draw(st.lists(header_pairs, max_size=8))
    # Never more than the body while within the limit: the server would wait for the rest.
    kind = draw(st.sampled_from(["exact"] * 6 + ["shorter", "negative", "oversize", "not a number"]))
    length = draw({
        "exact": st.just(str(len(body))),
        "shorter": st.integers(0, max(0, len(body) - 1)).map(str),  # the rest is left unread
        "negative": st.sampled_from(["-1", "-100", str(-MAX_BODY)]),
        "oversize": st.integers(MAX_BODY + 1, 2**70).map(str),
        "not a number": st.sampled_from(["abc", "1.5", "0x10", "\u00b2", "1 2", "--1", "+", "1e3"])
        | latin1_text.filter(_not_a_number),
    }[kind])
    headers.append(("Content-Length", length))
    head = f"{method} ".encode() + target + b" HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers).encode(
        "latin-1") + b"\r\n"
    return method, head + body


# ---------------------------------------------------------------- the fuzz tests
def test_signed_requests_with_malformed_content(server):
    @settings(FUZZ, max_examples=examples(300))
    @given(signed_requests(server))
    def fuzz(request):
        method, params, body_params = request
        status, doc = check(server, *send_signed(server, method, params, body_params))
        assert doc.get("Code") not in AUTH_CODES, f"a properly signed request was refused: {doc}"

    fuzz()
    assert_still_serving(server)


def test_raw_garbage(server):
    @settings(FUZZ, max_examples=examples(200))
    @given(raw_requests())
    def fuzz(request):
        method, raw = request
        check(server, *send_raw(server, raw, method))

    fuzz()
    assert_still_serving(server)


# ---------------------------------------------------------------- bugs the fuzzing found
def _signed_describe(server, **extra) -> tuple[int, dict]:
    return check(server, *send_signed(server, "GET", {"Action": "DescribeDisks", "Version": API_VERSION,
                                                      "RegionId": REGION, **extra}))


def test_a_tag_index_of_non_ascii_digits_is_invalid(server):
    # "²".isdigit() is true but int("²") raises: Params.tags must refuse the index, not crash.
    status, doc = _signed_describe(server, **{"Tag.\u00b2.Key": "k"})
    assert (status, doc["Code"]) == (400, "InvalidParameter")


def test_deeply_nested_disk_ids_are_malformed(server):
    # json.loads raises RecursionError (not ValueError) on deep nesting.
    status, doc = _signed_describe(server, DiskIds="[" * 5000)
    assert (status, doc["Code"]) == (400, "InvalidDiskIds.Malformed")


def test_an_absolute_target_with_a_broken_host_is_answered(server):
    # urlsplit raises ValueError("Invalid IPv6 URL") before the handler's try block.
    check(server, *send_raw(server, b"GET http://[/?Action=DescribeRegions HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 0\r\n\r\n", "GET"))
    assert_still_serving(server)


def test_a_non_ascii_space_in_the_target_gets_an_ecs_error(server):
    # http.server splits the Latin-1 request line with str.split(), which also splits at
    # 0x85 and 0xA0, and then answers with its own HTML error page, not an ECS error.
    check(server, *send_raw(server, b"GET /?Action=DescribeRegions&x=\xa0 HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 0\r\n\r\n", "GET"))
