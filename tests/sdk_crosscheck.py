"""Drive the fake cloud with Alibaba's official signing package (alibabacloud-openapi-util).

Usage: python3 tests/sdk_crosscheck.py http://127.0.0.1:PORT

Every request below is signed by the official package, not by this project's code: RPC V2
(query and form body), ROA (GET /tokens) and V3 (ACS3-HMAC-SHA256, including STS credentials
and a form body). Each must be accepted; the same request tampered after signing (a changed
parameter, header or body, or the wrong secret) must be rejected with the expected code.
Exit status: 0 all good, 1 a check failed, 3 the package is missing.
"""

import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from email.utils import formatdate

try:
    from alibabacloud_openapi_util.client import Client as Util
    from Tea.request import TeaRequest
except ImportError as exc:  # pragma: no cover - environment problem, reported plainly
    print(f"alibabacloud-openapi-util is not importable ({exc}); run: pip install -r tests/requirements.txt")
    sys.exit(3)

AK, SECRET = "LTAIci", "cisecret"
INSTANCE = "cri-test1"
ROLE_ARN = "acs:ram::1111111111111111:role/acr-puller"
BASE = sys.argv[1].rstrip("/")
HOST = urllib.parse.urlparse(BASE).netloc
RESULTS = []


def q(value):
    return urllib.parse.quote(value, safe="~")


def send(method, path, query=None, headers=None, body=b""):
    url = BASE + path
    if query:
        url += "?" + "&".join(f"{q(k)}={q(v)}" for k, v in query.items())
    req = urllib.request.Request(url, data=body if body else None, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def check(name, got, want_status, want_code=None):
    status, body = got
    ok = status == want_status and (want_code is None or body.get("Code") == want_code)
    RESULTS.append(ok)
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else f": got {status} {body}"))
    return body


# ---- RPC V2 -----------------------------------------------------------------------------
def rpc_v2(action, version, api_params, secret=SECRET, ak=AK, token=None, in_body=False, tamper=None):
    common = {
        "Action": action, "Version": version, "Format": "JSON", "AccessKeyId": ak,
        "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex, "Timestamp": Util.get_timestamp(),
    }
    if token:
        common["SecurityToken"] = token
    signed = dict(common, **api_params)
    common["Signature"] = Util.get_rpcsignature(signed, "POST", secret)
    query, form = (common, dict(api_params)) if in_body else (dict(common, **api_params), {})
    if tamper:
        tamper(query, form)
    body = urllib.parse.urlencode(form, quote_via=urllib.parse.quote).encode() if form else b""
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    return send("POST", "/", query, headers, body)


check("rpc-v2 GetAuthorizationToken", rpc_v2("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE}), 200)
check("rpc-v2 ListInstanceEndpoint", rpc_v2("ListInstanceEndpoint", "2018-12-01", {"InstanceId": INSTANCE, "ModuleName": "Registry"}), 200)
check("rpc-v2 tampered parameter", rpc_v2("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE},
      tamper=lambda qy, f: qy.update(InstanceId="cri-other")), 400, "SignatureDoesNotMatch")
check("rpc-v2 wrong secret", rpc_v2("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE}, secret="nope"),
      400, "SignatureDoesNotMatch")
assume = {"RoleArn": ROLE_ARN, "RoleSessionName": "sdk-crosscheck", "DurationSeconds": "3600"}
sts = check("rpc-v2 AssumeRole (form body)", rpc_v2("AssumeRole", "2015-04-01", assume, in_body=True), 200)
check("rpc-v2 AssumeRole tampered body", rpc_v2("AssumeRole", "2015-04-01", assume, in_body=True,
      tamper=lambda qy, f: f.update(RoleSessionName="someone-else")), 400, "SignatureDoesNotMatch")
creds = sts.get("Credentials", {})
STS_AK, STS_SECRET, STS_TOKEN = creds.get("AccessKeyId", ""), creds.get("AccessKeySecret", ""), creds.get("SecurityToken", "")
check("rpc-v2 with STS token", rpc_v2("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE},
      ak=STS_AK, secret=STS_SECRET, token=STS_TOKEN), 200)
check("rpc-v2 with tampered STS token", rpc_v2("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE},
      ak=STS_AK, secret=STS_SECRET, token=STS_TOKEN,
      tamper=lambda qy, f: qy.update(SecurityToken=STS_TOKEN + "x")), 400, "InvalidSecurityToken.MismatchWithAccessKey")


# ---- ROA ----------------------------------------------------------------------------------
def roa(ak=AK, secret=SECRET, token=None, tamper=None):
    req = TeaRequest()
    req.method, req.pathname = "GET", "/tokens"
    req.headers = {
        "date": formatdate(usegmt=True), "host": HOST, "accept": "application/json",
        "x-acs-signature-nonce": uuid.uuid4().hex, "x-acs-signature-method": "HMAC-SHA1",
        "x-acs-signature-version": "1.0", "x-acs-version": "2016-06-07",
        "x-acs-action": "GetAuthorizationToken", "user-agent": "sdk-crosscheck",
    }
    if token:
        req.headers["x-acs-accesskey-id"] = ak
        req.headers["x-acs-security-token"] = token
    req.query = {}
    signature = Util.get_roasignature(Util.get_string_to_sign(req), secret)
    req.headers["authorization"] = f"acs {ak}:{signature}"
    if tamper:
        tamper(req.headers)
    headers = {k: v for k, v in req.headers.items() if k != "host"}
    return send("GET", "/tokens", None, headers)


status, body = roa()
check("roa GET /tokens", (status, body), 200)
check("roa GET /tokens with STS token", roa(STS_AK, STS_SECRET, STS_TOKEN), 200)
check("roa tampered x-acs header", roa(tamper=lambda h: h.update({"x-acs-action": "GetAuthorizationTokenX"})), 400, "SignatureDoesNotMatch")
check("roa wrong secret", roa(secret="nope"), 400, "SignatureDoesNotMatch")


# ---- V3 -----------------------------------------------------------------------------------
def v3(action, version, query, form=None, ak=AK, secret=SECRET, token=None, path="/", method="POST", tamper=None):
    body = urllib.parse.urlencode(form, quote_via=urllib.parse.quote).encode() if form else b""
    req = TeaRequest()
    req.method, req.pathname, req.query = method, path, dict(query)
    req.headers = {
        "host": HOST, "x-acs-action": action, "x-acs-version": version,
        "x-acs-date": Util.get_timestamp(), "x-acs-signature-nonce": uuid.uuid4().hex,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "accept": "application/json", "user-agent": "sdk-crosscheck",
    }
    if form:
        req.headers["content-type"] = "application/x-www-form-urlencoded"
    if token:
        req.headers["x-acs-accesskey-id"] = ak
        req.headers["x-acs-security-token"] = token
    req.headers["authorization"] = Util.get_authorization(req, "ACS3-HMAC-SHA256", req.headers["x-acs-content-sha256"], ak, secret)
    state = {"query": req.query, "headers": req.headers, "body": body}
    if tamper:
        tamper(state)
    headers = {k: v for k, v in state["headers"].items() if k != "host"}
    return send(method, path, state["query"], headers, state["body"])


check("v3 GetAuthorizationToken (all headers signed)", v3("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE}), 200)
check("v3 with STS token", v3("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE}, ak=STS_AK, secret=STS_SECRET, token=STS_TOKEN), 200)
check("v3 AssumeRole with form body", v3("AssumeRole", "2015-04-01", {}, form=assume), 200)
check("v3 ROA GET /tokens", v3("GetAuthorizationToken", "2016-06-07", {}, path="/tokens", method="GET"), 200)
check("v3 tampered query", v3("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE},
      tamper=lambda s: s["query"].update(InstanceId="cri-other")), 400, "SignatureDoesNotMatch")
check("v3 tampered signed header", v3("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE},
      tamper=lambda s: s["headers"].update({"user-agent": "someone-else"})), 400, "SignatureDoesNotMatch")


def tamper_body(s):
    s["body"] = s["body"].replace(b"sdk-crosscheck", b"someone-else")
    s["headers"]["x-acs-content-sha256"] = hashlib.sha256(s["body"]).hexdigest()


check("v3 tampered body (hash updated)", v3("AssumeRole", "2015-04-01", {}, form=assume, tamper=tamper_body), 400, "SignatureDoesNotMatch")
check("v3 wrong secret", v3("GetAuthorizationToken", "2018-12-01", {"InstanceId": INSTANCE}, secret="nope"), 400, "SignatureDoesNotMatch")

failed = RESULTS.count(False)
print(f"crosscheck: {RESULTS.count(True)} ok, {failed} failed")
sys.exit(1 if failed else 0)
