"""Bad input to a live ``automl server`` is answered with a 4xx and one line naming the problem, never a 500.

Each case sends what a broken or hostile client might (bad JSON, wrong types, missing fields, bodies
and uploads over their bounds, a wrong sha256, unknown and malformed job ids, bad query parameters,
wrong methods, no token) and checks the status, that the body is JSON with an ``error`` line that
names the problem, and that no traceback leaks into it. The server's log must show no internal error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from server_fixture import LiveServer, start_server  # tests/server/, on sys.path by its conftest

JSON_LIMIT_KB = 16  # the smallest the server allows
CODE_LIMIT_MB = 1  # whole MB: the limits are named in MB
DATA_LIMIT_MB = 2
UNKNOWN_ID = "0123456789ab"
SHA_A = "a" * 64


@dataclass
class Bad:
    """A live server with small limits, one queued job of alice's, and a client per user."""

    server: LiveServer
    job_id: str
    clients: dict[str, httpx.Client]

    def call(self, method: str, path: str, *, user: str | None = "alice", **kwargs: Any) -> httpx.Response:
        client = self.clients[user] if user else self.clients["nobody"]
        return client.request(method, path, **kwargs)


def plan(**spec: Any) -> str:
    """A plan as ``automl submit`` sends it: JSON with the job's spec."""
    base = {
        "name": "bad-input",
        "objective": "nowhere:objective",  # never runs: no runner here
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
        "metric": "loss",
        "mode": "min",
        "budget": {"trials": 2},
    }
    return json.dumps({"spec": {**base, **spec}})


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bad]:
    root = tmp_path_factory.mktemp("bad-input")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AUTOML_DB_URL", "AUTOML_STORAGE_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS", "AUTOML_TRIAL_STORAGE"):
            mp.delenv(name, raising=False)
        mp.setenv("AUTOML_HOME", str(root / "home"))
        mp.setenv("AUTOML_DATA_CACHE", str(root / "data-cache"))
        mp.setenv("AUTOML_MAX_DATA_MB", str(DATA_LIMIT_MB))  # read when the application is built
        live = start_server(config_overrides={"max_json_kb": JSON_LIMIT_KB, "max_code_mb": CODE_LIMIT_MB})
        clients = {
            user: httpx.Client(base_url=f"{live.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)
            for user, token in live.tokens.items()
        }
        clients["nobody"] = httpx.Client(base_url=f"{live.url}/api/v1", timeout=30)
        try:
            queued = clients["alice"].post("/jobs", json={"plan_json": plan()})
            assert queued.status_code == 201, queued.text
            yield Bad(live, queued.json()["id"], clients)
        finally:
            for client in clients.values():
                client.close()
            live.stop()


@pytest.fixture(autouse=True)
def no_internal_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The server runs in this process: an unexpected exception would be logged by ``automl.server``."""
    with caplog.at_level(logging.ERROR, logger="automl.server"):
        yield
    internal = [r.getMessage() for r in caplog.records if r.name.startswith("automl.server") and r.levelno >= logging.ERROR]
    assert not internal, f"the server logged internal errors: {internal}"


def refused(answer: httpx.Response, status: int | tuple[int, ...], names: str) -> dict[str, Any]:
    """``answer`` is a 4xx of ``status`` whose one-line JSON ``error`` matches ``names`` (a regex), without a traceback."""
    expected = (status,) if isinstance(status, int) else status
    where = f"{answer.request.method} {answer.request.url.raw_path.decode()[:120]}"
    assert answer.status_code in expected, f"{where}: {answer.status_code} {answer.text[:500]}"
    assert 400 <= answer.status_code < 500
    assert "Traceback" not in answer.text and 'File "' not in answer.text, f"{where}: a traceback in the body: {answer.text}"
    assert answer.headers["content-type"].startswith("application/json"), f"{where}: {answer.headers['content-type']}"
    body = answer.json()
    error = body.get("error")
    assert isinstance(error, str) and error.strip() and "\n" not in error, f"{where}: {body}"
    assert re.search(names, error, re.IGNORECASE), f"{where}: {error!r} does not name the problem ({names!r})"
    return body


# -- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "status", "names"),
    [
        pytest.param(b'{"plan_json": ', 422, r"body: not valid JSON at character \d+", id="truncated-json"),
        pytest.param(b"{bad", 422, r"not valid JSON", id="not-json"),
        pytest.param(b"[1, 2]", 422, r"body: .*dictionary", id="a-list"),
        pytest.param(b'"plan"', 422, r"body: .*dictionary", id="a-string"),
        pytest.param(b"{}", 422, r"body\.plan_json: Field required", id="missing-field"),
        pytest.param(b'{"plan_json": 5}', 422, r"body\.plan_json: .*string", id="wrong-type"),
        pytest.param(b'{"plan_json": null}', 422, r"body\.plan_json", id="null"),
        pytest.param(b'{"plan_json": ""}', 422, r"body\.plan_json: .*at least 2", id="too-short"),
        pytest.param(b'{"plan_json": "{}", "code_sha256": "xyz"}', 422, r"body\.code_sha256", id="bad-sha-field"),
        pytest.param(b'{"plan_json": "{}", "base_dir": 12}', 422, r"body\.base_dir", id="base-dir-type"),
        pytest.param(b'{"plan_json": "not json"}', 422, r"plan_json: not a plan", id="plan-not-json"),
        pytest.param(b'{"plan_json": "{\\"nospec\\": 1}"}', 422, r"plan_json: not a plan", id="plan-without-spec"),
        pytest.param(b'{"plan_json": "{\\"spec\\": [1]}"}', 422, r"mapping of fields", id="spec-a-list"),
        pytest.param(b"[" * 15_000, 400, r"parsing the body", id="nested-past-the-parser"),
        pytest.param(b'{"plan_json": "\xff\xfe"}', 400, r"parsing the body", id="not-utf8"),
    ],
)
def test_a_malformed_submit_is_refused_naming_the_problem(bad: Bad, content: bytes, status: int, names: str) -> None:
    refused(bad.call("POST", "/jobs", content=content, headers={"Content-Type": "application/json"}), status, names)


def test_a_plan_nested_deeper_than_python_parses_is_refused_not_crashed(bad: Bad) -> None:
    # plan_json is a string the server parses itself; nested past Python's recursion limit it was a 500.
    refused(bad.call("POST", "/jobs", json={"plan_json": "[" * 10_000}), 422, r"plan_json: not a plan")


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        pytest.param({"metric": 5}, r"metric", id="metric-type"),
        pytest.param({"budget": {"trials": 0}}, r"budget\.trials", id="budget"),
        pytest.param({"sampler": {"name": "tpee"}}, r"sampler\.name: unknown sampler 'tpee'", id="sampler"),
        pytest.param({"mode": "sideways"}, r"mode", id="mode"),
        pytest.param({"warm_start": {"from_job": UNKNOWN_ID}}, r"warm_start\.from_job", id="warm-start"),
        pytest.param({"sampler": {"name": "tpe", "options": {"deep": json.loads("[" * 40 + "]" * 40)}}}, r"nested", id="deep"),
    ],
)
def test_an_invalid_spec_in_a_plan_is_refused_naming_the_field(bad: Bad, spec: dict[str, Any], names: str) -> None:
    refused(bad.call("POST", "/jobs", json={"plan_json": plan(**spec)}), 422, names)


def test_a_plan_naming_a_blob_that_is_not_stored_is_refused(bad: Bad) -> None:
    refused(
        bad.call("POST", "/jobs", json={"plan_json": plan(), "code_sha256": SHA_A}), 422, r"code package aaaaaaaaaaaa is not in"
    )
    refused(bad.call("POST", "/jobs", json={"plan_json": plan(), "data_sha256": SHA_A}), 422, r"data file aaaaaaaaaaaa is not in")


def test_a_body_over_the_json_limit_is_refused_with_413_declared_or_streamed(bad: Bad) -> None:
    big = json.dumps({"plan_json": plan(description="x" * (JSON_LIMIT_KB * 2**10))}).encode()
    refused(
        bad.call("POST", "/jobs", content=big, headers={"Content-Type": "application/json"}),
        413,
        rf"over the limit of {JSON_LIMIT_KB} KB",
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bound is counted as the bytes come
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = bad.call("POST", "/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    refused(streamed, 413, rf"over the limit of {JSON_LIMIT_KB} KB")


# -- blobs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "limit_mb"), [("code", CODE_LIMIT_MB), ("data", DATA_LIMIT_MB)])
def test_an_upload_over_its_limit_is_refused_with_413(bad: Bad, kind: str, limit_mb: float) -> None:
    blob = b"z" * (int(limit_mb * 2**20) + 1)
    sha = hashlib.sha256(blob).hexdigest()
    refused(bad.call("PUT", f"/blobs/{kind}/{sha}", content=blob), 413, rf"over the limit of {limit_mb:g} MB")
    streamed = iter([blob[:1000], blob[1000:]])  # no Content-Length
    refused(bad.call("PUT", f"/blobs/{kind}/{sha}", content=streamed), 413, rf"over the limit of {limit_mb:g} MB")
    refused(bad.call("GET", f"/blobs/{sha}"), 404, rf"no blob {sha[:12]}")


def test_an_upload_whose_bytes_do_not_match_its_sha256_is_refused(bad: Bad) -> None:
    blob = b"print('hello')\n"
    wrong = hashlib.sha256(b"something else").hexdigest()
    refused(
        bad.call("PUT", f"/blobs/code/{wrong}", content=blob),
        422,
        rf"hash to {hashlib.sha256(blob).hexdigest()[:12]}, not {wrong[:12]}",
    )
    refused(bad.call("GET", f"/blobs/{wrong}"), 404, r"no blob")


@pytest.mark.parametrize(
    ("method", "path", "status", "names"),
    [
        ("GET", "/blobs/abc", 422, r"not a sha256"),
        ("GET", f"/blobs/{SHA_A.upper()}", 422, r"not a sha256"),
        ("PUT", "/blobs/code/abc", 422, r"not a sha256"),
        ("PUT", f"/blobs/scripts/{SHA_A}", 422, r"blob kind 'scripts': one of code, data"),
        ("PUT", f"/blobs/..%2F..%2Fetc/{SHA_A}", (404, 422), r"not found|blob kind"),
        ("GET", "/blobs/..%2F..%2Fetc%2Fpasswd", (404, 405, 422), r"not found|not a sha256|not allowed"),
    ],
)
def test_malformed_blob_paths_are_refused(bad: Bad, method: str, path: str, status: int, names: str) -> None:
    refused(bad.call(method, path, content=b"x" if method == "PUT" else None), status, names)


# -- job ids -----------------------------------------------------------------------------------

JOB_ROUTES = [
    ("GET", "/jobs/{}"),
    ("GET", "/jobs/{}/status"),
    ("GET", "/jobs/{}/events"),
    ("GET", "/jobs/{}/best"),
    ("GET", "/jobs/{}/stream"),
    ("POST", "/jobs/{}/cancel"),
    ("POST", "/jobs/{}/rerun"),
]


@pytest.mark.parametrize(("method", "route"), JOB_ROUTES, ids=[f"{m} {r}" for m, r in JOB_ROUTES])
def test_an_unknown_job_is_404_on_every_job_route(bad: Bad, method: str, route: str) -> None:
    refused(bad.call(method, route.format(UNKNOWN_ID)), 404, rf"no job with id '{UNKNOWN_ID}'")
    refused(bad.call(method, route.format(UNKNOWN_ID[:6])), 404, rf"no job with id '{UNKNOWN_ID[:6]}'")


@pytest.mark.parametrize(
    ("job_id", "status", "names"),
    [
        ("zzzz", 422, r"'zzzz' is not a job id"),
        ("abc", 422, r"too short"),
        ("%2e%2e", 422, r"'\.\.' is not a job id"),
        ("..%5C..%5Cwindows", 422, r"is not a job id"),
        ("%00abcd", 422, r"is not a job id"),
        ("%C4%85%C4%99%C5%9B%C4%87", 422, r"is not a job id"),
        ("0123456789ab" * 20, 422, r"\(240 characters\) is not a job id"),
        ("..%2F..%2Fetc%2Fpasswd", 404, r"not found"),  # an encoded slash routes nowhere
        ("%25", 422, r"'%' is not a job id"),
        ("'%20OR%201=1--", 422, r"is not a job id"),
    ],
)
def test_malformed_job_ids_are_refused_on_every_job_route(bad: Bad, job_id: str, status: int, names: str) -> None:
    for method, route in JOB_ROUTES:
        refused(bad.call(method, route.format(job_id)), status, names)


def test_another_users_job_is_404_and_a_final_job_cannot_be_cancelled_again(bad: Bad) -> None:
    for method, route in JOB_ROUTES:
        refused(bad.call(method, route.format(bad.job_id), user="bob"), 404, rf"no job with id '{bad.job_id}'")
    done = bad.call("POST", "/jobs", json={"plan_json": plan(name="cancelled-twice")}).json()["id"]
    bad.call("POST", f"/jobs/{done}/cancel").raise_for_status()
    body = refused(bad.call("POST", f"/jobs/{done}/cancel"), 409, r"already cancelled")
    assert body["kind"] == "AutomlError"


# -- queries, methods, tokens ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "names"),
    [
        ("/jobs?limit=abc", r"query\.limit: .*integer"),
        ("/jobs?limit=0", r"query\.limit: .*greater than or equal to 1"),
        ("/jobs?limit=100000000000000000000000000", r"query\.limit: .*less than or equal to 1000"),
        ("/jobs?limit=1.5", r"query\.limit"),
        ("/jobs?state=nope", r"query\.state\.0: .*'queued'"),
        ("/jobs?state=running&state=", r"query\.state\.1"),
        ("/jobs/{job}/events?limit=-1", r"query\.limit"),
        ("/jobs/{job}/status?events=many", r"query\.events"),
        ("/jobs/{job}/status?events=1001", r"query\.events: .*1000"),
        ("/jobs/{job}/stream?every_s=nan", r"query\.every_s"),
        ("/jobs/{job}/stream?every_s=inf", r"query\.every_s"),
        ("/jobs/{job}/stream?every_s=0", r"query\.every_s: .*0\.2"),
    ],
)
def test_bad_query_parameters_are_refused_naming_them(bad: Bad, path: str, names: str) -> None:
    refused(bad.call("GET", path.format(job=bad.job_id)), 422, names)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/jobs"),
        ("PUT", "/jobs"),
        ("DELETE", "/jobs/{job}"),
        ("GET", "/jobs/{job}/cancel"),
        ("PUT", "/jobs/{job}/status"),
        ("POST", "/whoami"),
        ("POST", "/health"),
        ("POST", f"/blobs/{SHA_A}"),
        ("GET", f"/blobs/code/{SHA_A}"),
    ],
)
def test_a_wrong_method_is_405(bad: Bad, method: str, path: str) -> None:
    refused(bad.call(method, path.format(job=bad.job_id)), 405, r"method not allowed")


def test_no_token_or_a_bad_one_is_401_everywhere_but_health(bad: Bad) -> None:
    assert bad.call("GET", "/health", user=None).json() == {"ok": True}
    unauthorized = r"a valid token is required"
    for method, route in [*JOB_ROUTES, ("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/whoami"), ("PUT", f"/blobs/code/{SHA_A}")]:
        refused(bad.call(method, route.format(bad.job_id), user=None), 401, unauthorized)
    for header in (
        "Bearer",
        "Bearer nonsense",
        "Basic YWxpY2U6cHc=",
        "bearer " + "x" * 8000,
        f"Bearer {bad.server.tokens['alice']}x",
    ):
        answer = bad.call("GET", "/whoami", user=None, headers={"Authorization": header})
        body = refused(answer, 401, unauthorized)
        assert bad.server.tokens["alice"] not in json.dumps(body)


def test_unknown_paths_are_404(bad: Bad) -> None:
    for path in ("/nothing", "/jobs/{job}/nothing", "/jobs/{job}/status/more", "/../../etc/passwd"):
        refused(bad.call("GET", path.format(job=bad.job_id)), 404, r"not found")


def test_a_bad_server_setting_is_one_line_naming_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `automl server` (and start-server.sh) print and exit 2 with, instead of pydantic's report."""
    from automl.errors import InputError
    from automl.server.config import ServerConfig

    monkeypatch.setenv("AUTOML_SERVER_PORT", "http")
    monkeypatch.setenv("AUTOML_SERVER_AUTH_CACHE_S", "600")
    with pytest.raises(InputError) as refused_settings:
        ServerConfig()
    message = str(refused_settings.value)
    assert "\n" not in message and message.startswith("AUTOML_SERVER_PORT='http': Input should be a valid integer"), message
    assert "AUTOML_SERVER_AUTH_CACHE_S='600': Input should be less than or equal to 60" in message


def test_the_live_server_still_answers(bad: Bad) -> None:
    """After all of the above (run last in this module): the server serves a good request as before."""
    assert bad.call("GET", "/whoami").json() == {"name": "alice", "role": "user"}
    assert [j["id"] for j in bad.call("GET", "/jobs", params={"state": "queued"}).json()] == [bad.job_id], "a bad plan was queued"
