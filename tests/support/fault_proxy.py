"""A fault-injecting HTTP proxy in front of the AWS emulator (tests of dependency faults).

Every request is forwarded unchanged to the upstream endpoint (method, path and query, headers
with `Host` as the client sent it, since SigV4 signs it, and body), and its answer comes back
unchanged, unless a fault is injected instead. Faults are drawn per request from a PRNG seeded
on the command line, at a configured rate, among the configured kinds that apply to the
request's service:

- `throttle`     DynamoDB only: 400 `ThrottlingException` or
                 `ProvisionedThroughputExceededException`, as DynamoDB throttles;
- `server_error` S3: 500 `InternalError` / 503 `SlowDown` (XML); SQS (JSON protocol):
                 500 `InternalError` / 503 `ServiceUnavailable` with `x-amzn-query-error`;
                 DynamoDB: 500 `InternalServerError`;
- `drop_before`  the connection is closed without an answer, the request never forwarded;
- `drop_after`   the request is forwarded (the write happens), then the connection is closed
                 without an answer: the answer is lost.

The service is told by `X-Amz-Target` (`DynamoDB_20120810.*`, `AmazonSQS.*`); anything else is
S3. The proxy answers `/__faults` itself: `GET` gives the counts as JSON (requests per service,
faults per kind and per service, the SDK's retries seen through the `amz-sdk-invocation-id` and
`amz-sdk-request` headers); `POST` with a JSON object changes the configuration at once
(`rate`, `rates`: per-service rates overriding it, `kinds`, `services`, `operations`: null or a
list of operation names, e.g. `TransactWriteItems`, `GetObject`, `match`: null or a text the
request's body must contain, `limit`: null or the most faults to inject from now on, `seed`).

Arguments: `--upstream URL`, `--rate`, `--service-rates` (`s3=0.3,sqs=0.1`), `--seed`,
`--kinds`, `--services`, `--operations` (comma-separated), `--host`, `--port` (0: a free
port). Once listening, it prints its port on a line of its own on stdout. It stops when its
standard input closes (the test process is gone). Standard library only.
"""

import argparse
import http.client
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("throttle", "server_error", "drop_before", "drop_after")
SERVICES = ("dynamodb", "s3", "sqs")
CONTROL_PATH = "/__faults"
# Headers that describe one connection, not the message: never copied onto another one.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class State:
    """The configuration and the counts, shared by the handler threads."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.upstream = urllib.parse.urlsplit(args.upstream)
        self.config = {
            "rate": args.rate,
            "kinds": split(args.kinds),
            "services": split(args.services),
            "operations": split(args.operations) if args.operations else None,
            "match": None,
            "limit": None,
            "rates": {
                service.strip(): float(rate)
                for service, _, rate in (part.partition("=") for part in split(args.rates))
            },
        }
        self.requests = {service: 0 for service in SERVICES}
        self.operations = {}
        # Seconds the upstream took to answer, per operation.
        self.upstream_seconds = {}
        self.faults = {kind: 0 for kind in KINDS}
        # Faults injected since the configuration last changed, for its `limit`.
        self.configured_faults = 0
        self.faults_by_service = {
            f"{service}_{kind}": 0 for service in SERVICES for kind in KINDS
        }
        self.faulted_invocations = set()
        self.retried_invocations = set()
        # Invocations whose latest request met a fault: the SDK gave up on them, unless a
        # request of theirs is still to come.
        self.unrecovered = {}
        self.retry_requests = 0
        self.max_attempt = 0

    def snapshot(self):
        with self.lock:
            faulted = len(self.faulted_invocations)
            return {
                "config": dict(self.config),
                "requests": dict(self.requests),
                "operations": dict(self.operations),
                "upstream_seconds": {k: round(v, 2) for k, v in self.upstream_seconds.items()},
                "faults": dict(self.faults),
                "faults_by_service": {k: v for k, v in self.faults_by_service.items() if v},
                "total_faults": sum(self.faults.values()),
                "faulted_invocations": faulted,
                # Invocations that met a fault and were sent again by the SDK.
                "faulted_invocations_retried": len(self.retried_invocations),
                # Requests whose `amz-sdk-request` says attempt 2 or later.
                "retry_requests": self.retry_requests,
                "unrecovered_invocations": sorted(self.unrecovered.values()),
                "max_attempt": self.max_attempt,
            }

    def configure(self, change):
        with self.lock:
            for name in ("rate", "kinds", "services", "operations", "rates", "match", "limit"):
                if name in change:
                    self.config[name] = change[name]
            self.configured_faults = 0
            if "seed" in change:
                self.rng = random.Random(change["seed"])
            return dict(self.config)

    def took(self, service, operation, seconds):
        with self.lock:
            name = f"{service}.{operation}"
            self.upstream_seconds[name] = self.upstream_seconds.get(name, 0.0) + seconds

    def decide(self, service, operation, invocation, attempt, body):
        """Counts the request and draws its fault: a kind, or None to forward it."""
        with self.lock:
            self.requests[service] += 1
            name = f"{service}.{operation}"
            self.operations[name] = self.operations.get(name, 0) + 1
            if attempt > 1:
                self.retry_requests += 1
                if invocation in self.faulted_invocations:
                    self.retried_invocations.add(invocation)
            self.max_attempt = max(self.max_attempt, attempt)
            self.unrecovered.pop(invocation, None)
            decision = self.draw(service, operation, body)
            if decision is not None and invocation:
                self.faulted_invocations.add(invocation)
                self.unrecovered[invocation] = (
                    f"{service}.{operation} {decision[0]} at attempt {attempt}"
                )
            return decision

    def draw(self, service, operation, body):
        """The fault of a request, if any (the lock is held)."""
        config = self.config
        if service not in config["services"]:
            return None
        if config["operations"] is not None and operation not in config["operations"]:
            return None
        if config["match"] and config["match"].encode() not in body:
            return None
        if config["limit"] is not None and self.configured_faults >= config["limit"]:
            return None
        kinds = [
            kind
            for kind in config["kinds"]
            if kind in KINDS and (kind != "throttle" or service == "dynamodb")
        ]
        # Two draws per request that may be faulted, whatever the outcome: the faults depend
        # on the seed and the order of requests alone.
        draw = self.rng.random()
        pick = self.rng.randrange(1 << 30)
        rate = config["rates"].get(service, config["rate"])
        if not kinds or draw >= rate:
            return None
        kind = kinds[pick % len(kinds)]
        self.configured_faults += 1
        self.faults[kind] += 1
        self.faults_by_service[f"{service}_{kind}"] += 1
        return kind, pick


def split(text):
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def classify(headers, method, path):
    """(service, operation) of a request."""
    target = headers.get("X-Amz-Target", "")
    if target.startswith("DynamoDB_"):
        return "dynamodb", target.split(".", 1)[-1]
    if target.startswith("AmazonSQS."):
        return "sqs", target.split(".", 1)[-1]
    # S3, path style: /bucket or /bucket/key.
    has_key = "/" in urllib.parse.urlsplit(path).path.lstrip("/")
    names = {
        ("GET", True): "GetObject",
        ("PUT", True): "PutObject",
        ("HEAD", True): "HeadObject",
        ("DELETE", True): "DeleteObject",
        ("PUT", False): "CreateBucket",
        ("GET", False): "ListObjects",
    }
    return "s3", names.get((method, has_key), f"{method}{'Object' if has_key else 'Bucket'}")


def attempt_of(headers):
    """The attempt number the SDK puts in `amz-sdk-request: ttl=…; attempt=N; max=M`."""
    for part in headers.get("amz-sdk-request", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "attempt" and value.isdigit():
            return int(value)
    return 1


def json_error(status, type_prefix, code, message, extra_headers=()):
    """An error answer of the AWS JSON protocols."""
    body = json.dumps({"__type": f"{type_prefix}#{code}", "message": message}).encode()
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-ErrorType", code)]
    return status, headers + list(extra_headers), body


def fault_answer(kind, service, pick):
    """(status, headers, body) of an injected error answer."""
    if kind == "throttle":
        if pick % 2 == 0:
            code, message = "ThrottlingException", "Rate exceeded"
        else:
            code, message = (
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            )
        return json_error(400, "com.amazonaws.dynamodb.v20120810", code, message)
    if service == "dynamodb":
        return json_error(
            500, "com.amazonaws.dynamodb.v20120810", "InternalServerError", "Internal server error"
        )
    if service == "sqs":
        # The JSON protocol of SQS, query-compatible: the query code in `x-amzn-query-error`.
        status, code = (500, "InternalError") if pick % 2 == 0 else (503, "ServiceUnavailable")
        return json_error(
            status,
            "com.amazonaws.sqs",
            code,
            "Please try again.",
            [("x-amzn-query-error", f"{code};Receiver")],
        )
    status, code, message = (
        (500, "InternalError", "We encountered an internal error. Please try again.")
        if pick % 2 == 0
        else (503, "SlowDown", "Please reduce your request rate.")
    )
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>fault-{pick:08x}</RequestId></Error>"
    ).encode()
    return status, [("Content-Type", "application/xml")], body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-proxy"
    state = None  # set by main

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def drop(self):
        """Closes the connection without a byte of answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def answer(self, status, headers, body, head=False):
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        # A HEAD answer keeps the upstream's length; 1xx, 204 and 304 answers carry none.
        if not head and not (status < 200 or status in (204, 304)):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not head:
            self.wfile.write(body)
        self.wfile.flush()

    def control(self, body):
        state = self.state
        if self.command == "POST":
            try:
                change = json.loads(body or b"{}")
            except ValueError as error:
                message = json.dumps({"error": str(error)}).encode()
                self.answer(400, [("Content-Type", "application/json")], message)
                return
            payload = {"config": state.configure(change)}
        else:
            payload = state.snapshot()
        self.answer(200, [("Content-Type", "application/json")], json.dumps(payload).encode())

    def forward(self, body):
        upstream = self.state.upstream
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            # The headers as the client sent them, `Host` included (SigV4 signs it).
            connection.putrequest(
                self.command, self.path, skip_host=True, skip_accept_encoding=True
            )
            chunked = False
            for name, value in self.headers.items():
                if name.lower() == "transfer-encoding":
                    chunked = True
                    continue
                connection.putheader(name, value)
            if chunked:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body if body else None)
            response = connection.getresponse()
            payload = response.read()
            headers = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length"
            ]
            if self.command == "HEAD":
                # A HEAD answer states the object's length and carries no body.
                length = response.getheader("Content-Length")
                if length is not None:
                    headers.append(("Content-Length", length))
            return response.status, headers, payload
        finally:
            connection.close()

    def handle_any(self):
        body = self.read_body()
        if urllib.parse.urlsplit(self.path).path.rstrip("/") == CONTROL_PATH:
            self.control(body)
            return
        service, operation = classify(self.headers, self.command, self.path)
        decision = self.state.decide(
            service,
            operation,
            self.headers.get("amz-sdk-invocation-id", ""),
            attempt_of(self.headers),
            body,
        )
        if decision is not None:
            kind, pick = decision
            if kind == "drop_before":
                self.drop()
                return
            if kind in ("throttle", "server_error"):
                answer = fault_answer(kind, service, pick)
                self.answer(*answer, head=self.command == "HEAD")
                return
        began = time.monotonic()
        try:
            status, headers, payload = self.forward(body)
            self.state.took(service, operation, time.monotonic() - began)
        except (OSError, http.client.HTTPException) as error:
            message = json.dumps({"error": f"upstream unreachable: {error}"}).encode()
            self.answer(502, [("Content-Type", "application/json")], message)
            return
        if decision is not None and decision[0] == "drop_after":
            self.drop()
            return
        self.answer(status, headers, payload, head=self.command == "HEAD")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = handle_any


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--operations", default="")
    parser.add_argument("--service-rates", dest="rates", default="", help="e.g. s3=0.3,sqs=0.1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    Handler.state = State(args)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)

    def watch_stdin():
        # The test process holds our stdin: when it is gone, so are we.
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
