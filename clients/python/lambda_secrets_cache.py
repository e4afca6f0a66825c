"""Read secrets and parameters through lambda-secrets-cache (or AWS's Parameters and Secrets
Lambda Extension, which answers the same routes) from a Lambda function. Standard library only.

    import lambda_secrets_cache as cache

    password = cache.get_secret_json("prod/db")["password"]
    flags = cache.get_parameter_value("/prod/app/flags")

The token and the port come from the same variables, in the same order, as the extension takes
them. One kept-alive connection serves a process's sequential reads (more are opened only for
reads that overlap in threads); a kept-alive connection found closed or reset before any answer
(after a freeze, say) is retried once on a new one. Errors are typed (`NotFound`,
`AccessDenied`, `Throttled`, ...) and carry the status and code; no exception, message or
`repr` here ever holds a value.

With AWS Lambda Powertools, `use_with_powertools()` makes `parameters.get_secret(...)` and
`parameters.get_parameter(...)` read through the extension (see `PowertoolsProvider`).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import urllib.parse
from typing import Any, Dict, List, Optional

__all__ = [
    "Client",
    "get_secret",
    "get_secret_string",
    "get_secret_json",
    "get_secret_binary",
    "get_parameter",
    "get_parameter_value",
    "use_with_powertools",
    "LambdaSecretsCacheError",
    "BadRequest",
    "TokenRejected",
    "AccessDenied",
    "NotFound",
    "Throttled",
    "UpstreamUnavailable",
    "UpstreamInvalid",
    "UpstreamTimeout",
    "ShuttingDown",
    "ExtensionUnavailable",
    "NotAString",
]

__version__ = "0.1.0"

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
PORT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
TOKEN_VARIABLES = ("AWS_TOKEN", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN")
# With SnapStart the function's credentials come from the container endpoint.
SNAPSTART_TOKEN_VARIABLES = ("AWS_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_SESSION_TOKEN")
DEFAULT_PORT = 2773
# Above the extension's own budget for one fetch (3 s by default, retries included).
DEFAULT_TIMEOUT = 10.0


class LambdaSecretsCacheError(Exception):
    """An error answer of the extension (`status`, its `__type` as `code`, and its message,
    which never holds a value), or a failure to reach it (`status` 0)."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}" if self.message else f"{self.status} {self.code}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, code={self.code!r})"


class BadRequest(LambdaSecretsCacheError):
    """400: the request was malformed (`InvalidRequest`, `TooManyRoles`, a proxy header), or
    another 4xx AWS gave (`DecryptionFailure`, ...)."""


class TokenRejected(LambdaSecretsCacheError):
    """403 `InvalidToken`: the token header is missing or wrong, or no token variable is set."""


class AccessDenied(LambdaSecretsCacheError):
    """AWS refused: 403, or an access-denied code (the function or `role_arn` may not read
    it, or KMS refused the key)."""


class NotFound(LambdaSecretsCacheError):
    """No such secret, parameter or version (404, or Parameter Store's 400 `ParameterNotFound`)."""


class Throttled(LambdaSecretsCacheError):
    """429: AWS throttled the read and nothing was cached, or too many connections."""


class UpstreamUnavailable(LambdaSecretsCacheError):
    """500/502/503: AWS could not be reached or failed (`ConnectionError`, `MissingRegion`,
    `MissingCredentials`, AWS's 5xx)."""


class UpstreamInvalid(LambdaSecretsCacheError):
    """502 `InvalidUpstreamResponse`: what answered was not a valid answer."""


class UpstreamTimeout(LambdaSecretsCacheError):
    """504 `TimeoutError`: AWS did not answer within the extension's budget."""


class ShuttingDown(LambdaSecretsCacheError):
    """504 `ShuttingDown`: the environment is shutting down."""


class ExtensionUnavailable(LambdaSecretsCacheError):
    """The extension could not be reached, or answered something that is not its API (status
    0, or the status it gave)."""


class NotAString(LambdaSecretsCacheError):
    """The secret holds `SecretBinary` (use `get_secret_binary`), or the reverse."""


_NOT_FOUND = {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
_ACCESS_DENIED = {"AccessDeniedException", "AccessDenied"}


def _error(status: int, body: bytes) -> LambdaSecretsCacheError:
    try:
        parsed = json.loads(body)
        code = str(parsed.get("__type") or "")
        message = str(parsed.get("message") or parsed.get("Message") or "")
    except (ValueError, AttributeError):
        code, message = "", ""
    message = message[:512]
    if status == 403 and code == "InvalidToken":
        kind: type = TokenRejected
    elif code in _NOT_FOUND:
        # Parameter Store says "not found" with a 400.
        kind = NotFound
    elif code in _ACCESS_DENIED:
        kind = AccessDenied
    elif status == 504 and code == "ShuttingDown":
        kind = ShuttingDown
    elif status == 502 and code == "InvalidUpstreamResponse":
        kind = UpstreamInvalid
    elif not code:
        kind, code = ExtensionUnavailable, f"HTTP{status}"
    else:
        kind = {400: BadRequest, 403: AccessDenied, 404: NotFound, 429: Throttled, 504: UpstreamTimeout}.get(
            status, UpstreamUnavailable if status >= 500 else BadRequest
        )
    return kind(status, code, message)


def _token() -> str:
    order = TOKEN_VARIABLES
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE", "").strip() == "snap-start":
        order = SNAPSTART_TOKEN_VARIABLES
    for name in order:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    # Set but empty (AWS's emulator with long-term keys): the empty token, as the extension takes it.
    if any(name in os.environ for name in order):
        return ""
    raise TokenRejected(0, "NoToken", "none of " + ", ".join(order) + " is set")


def _port() -> int:
    raw = os.environ.get(PORT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise ExtensionUnavailable(0, "BadPort", f"{PORT_VARIABLE} is not a port number") from None
    if not 0 < port < 65536:
        raise ExtensionUnavailable(0, "BadPort", f"{PORT_VARIABLE} is not a port number")
    return port


class Client:
    """Reads through the extension on 127.0.0.1. Thread-safe: each read takes an idle
    connection (or opens one) and gives it back once the answer is read, so sequential reads
    share one connection. `port` and `timeout` (seconds per read) default to the environment
    (`PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`, else 2773) and 10 s."""

    def __init__(self, port: Optional[int] = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._port = port
        self._timeout = timeout
        self._idle: List[_Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        port = self._port or os.environ.get(PORT_VARIABLE, "").strip() or DEFAULT_PORT
        return f"Client(port={port}, timeout={self._timeout})"

    # --- Secrets Manager ---

    def get_secret(
        self,
        secret_id: str,
        *,
        version_stage: Optional[str] = None,
        version_id: Optional[str] = None,
        refresh: bool = False,
        role_arn: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The GetSecretValue answer (`ARN`, `Name`, `VersionId`, `SecretString` or
        `SecretBinary` (base64), `VersionStages`, `CreatedDate`)."""
        query = _query(secretId=secret_id, versionStage=version_stage, versionId=version_id)
        return self._get("/secretsmanager/get", _query(query, refreshNow=refresh or None, roleArn=role_arn))

    def get_secret_string(self, secret_id: str, **options: Any) -> str:
        """`SecretString`; `NotAString` if the secret holds binary."""
        secret = self.get_secret(secret_id, **options)
        value = secret.get("SecretString")
        if value is None:
            raise NotAString(200, "SecretBinary", f"{secret_id} holds SecretBinary: use get_secret_binary")
        return value

    def get_secret_json(self, secret_id: str, **options: Any) -> Any:
        """`SecretString` parsed as JSON; `ValueError` (without the text) if it is not JSON."""
        text = self.get_secret_string(secret_id, **options)
        try:
            return json.loads(text)
        except ValueError as e:
            # The decoder's error keeps the whole text (`doc`): not passed on.
            line, column = getattr(e, "lineno", "?"), getattr(e, "colno", "?")
            raise ValueError(f"{secret_id} is not JSON (line {line}, column {column})") from None

    def get_secret_binary(self, secret_id: str, **options: Any) -> bytes:
        """`SecretBinary`, decoded; `NotAString` if the secret holds a string."""
        secret = self.get_secret(secret_id, **options)
        value = secret.get("SecretBinary")
        if value is None:
            raise NotAString(200, "SecretString", f"{secret_id} holds SecretString: use get_secret_string")
        return base64.b64decode(value)

    # --- Parameter Store ---

    def get_parameter(
        self,
        name: str,
        *,
        with_decryption: Optional[bool] = None,
        version: Optional[int] = None,
        label: Optional[str] = None,
        refresh: bool = False,
        role_arn: Optional[str] = None,
    ) -> Dict[str, Any]:
        """The GetParameter answer (`{"Parameter": {"Name", "Type", "Value", "Version", ...}}`).
        `with_decryption=None` leaves it to the extension (AWS's default: not decrypted)."""
        query = _query(
            name=name,
            withDecryption=with_decryption,
            version=None if version is None else int(version),
            label=label,
        )
        return self._get("/systemsmanager/parameters/get", _query(query, refreshNow=refresh or None, roleArn=role_arn))

    def get_parameter_value(self, name: str, **options: Any) -> str:
        """The parameter's `Value`."""
        return self.get_parameter(name, **options)["Parameter"]["Value"]

    # --- the wire ---

    def _get(self, path: str, query: Dict[str, str]) -> Dict[str, Any]:
        target = path + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        token = _token()
        if "\r" in token or "\n" in token:
            raise TokenRejected(0, "BadToken", "the token variable holds a line break")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{TOKEN_HEADER}: {token}\r\n\r\n".encode("latin-1", "replace")
        )
        status, body = self._exchange(request)
        if status != 200:
            raise _error(status, body)
        try:
            answer = json.loads(body)
        except ValueError:
            raise ExtensionUnavailable(status, "NotJson", "the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ExtensionUnavailable(status, "NotJson", "the answer is not a JSON object")
        return answer

    def _exchange(self, request: bytes) -> "tuple[int, bytes]":
        conn = self._take()
        try:
            try:
                status, body, keep = conn.exchange(request)
            except _Unanswered:
                # Closed or reset before any answer (a kept-alive connection across a freeze):
                # a GET is safe to send again, once, on a new connection.
                conn.close()
                conn = _Connection(self._port or _port(), self._timeout)
                status, body, keep = conn.exchange(request)
        except _Unanswered:
            conn.close()
            raise ExtensionUnavailable(0, "Unreachable", "the connection closed before an answer, twice") from None
        except socket.timeout:
            conn.close()
            raise ExtensionUnavailable(0, "ClientTimeout", f"no answer within {self._timeout} s") from None
        except OSError as e:
            conn.close()
            raise ExtensionUnavailable(0, "Unreachable", f"cannot reach the extension: {e.strerror or type(e).__name__}") from None
        except _NotHttp as e:
            conn.close()
            raise ExtensionUnavailable(0, "BadAnswer", f"the answer is not HTTP/1.1 ({e})") from None
        if keep:
            self._give_back(conn)
        else:
            conn.close()
        return status, body

    def _take(self) -> "_Connection":
        with self._lock:
            if self._pid != os.getpid():
                # A forked child does not share its parent's sockets.
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return _Connection(self._port or _port(), self._timeout)

    def _give_back(self, conn: "_Connection") -> None:
        with self._lock:
            if len(self._idle) < 8 and self._pid == os.getpid():
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Closes the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _Unanswered(Exception):
    """The connection closed or was reset before any byte of an answer."""


class _NotHttp(Exception):
    pass


# An answer's head and body are bounded: the extension's answers are at most ~130 KiB.
_MAX_HEAD = 16 * 1024
_MAX_BODY = 8 * 1024 * 1024


class _Connection:
    """One kept-alive HTTP/1.1 connection to the extension on loopback: the request written in
    one send, the answer read by `Content-Length` (or chunks). http.client parses every answer's
    headers with the email package; this costs a fraction of that per read."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: Optional[socket.socket] = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, request: bytes) -> "tuple[int, bytes, bool]":
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = self.sock
        try:
            sock.sendall(request)
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            raise _Unanswered() from None
        if not data:
            raise _Unanswered()
        while b"\r\n\r\n" not in data:
            if len(data) > _MAX_HEAD:
                raise _NotHttp("head too large")
            more = sock.recv(65536)
            if not more:
                raise _NotHttp("closed inside the head")
            data += more
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _NotHttp("no status line")
        status = int(parts[1])
        length, chunked, keep = None, False, parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                if not value.isdigit() or int(value) > _MAX_BODY:
                    raise _NotHttp("bad Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.endswith(b"chunked")
            elif name == b"connection":
                keep = value == b"keep-alive" or (keep and value != b"close")
        if chunked:
            body, rest = self._chunks(rest)
        elif length is not None:
            while len(rest) < length:
                more = sock.recv(max(65536, length - len(rest)))
                if not more:
                    raise _NotHttp("closed inside the body")
                rest += more
            body = rest[:length]
        else:
            # No length: the body runs to the close.
            while True:
                more = sock.recv(65536)
                if not more:
                    break
                rest += more
                if len(rest) > _MAX_BODY:
                    raise _NotHttp("body too large")
            body, keep = rest, False
        return status, body, keep

    def _chunks(self, data: bytes) -> "tuple[bytes, bytes]":
        body = b""
        while True:
            while b"\r\n" not in data:
                more = self.sock.recv(65536) if self.sock else b""
                if not more:
                    raise _NotHttp("closed inside a chunk")
                data += more
            size_line, _, data = data.partition(b"\r\n")
            try:
                size = int(size_line.split(b";")[0], 16)
            except ValueError:
                raise _NotHttp("bad chunk size") from None
            while len(data) < size + 2:
                more = self.sock.recv(65536) if self.sock else b""
                if not more:
                    raise _NotHttp("closed inside a chunk")
                data += more
            if size == 0:
                return body, data[2:]
            body += data[:size]
            if len(body) > _MAX_BODY:
                raise _NotHttp("body too large")
            data = data[size + 2 :]


_default: Optional[Client] = None
_default_lock = threading.Lock()


def _client() -> Client:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


def get_secret(secret_id: str, **options: Any) -> Dict[str, Any]:
    return _client().get_secret(secret_id, **options)


def get_secret_string(secret_id: str, **options: Any) -> str:
    return _client().get_secret_string(secret_id, **options)


def get_secret_json(secret_id: str, **options: Any) -> Any:
    return _client().get_secret_json(secret_id, **options)


def get_secret_binary(secret_id: str, **options: Any) -> bytes:
    return _client().get_secret_binary(secret_id, **options)


def get_parameter(name: str, **options: Any) -> Dict[str, Any]:
    return _client().get_parameter(name, **options)


def get_parameter_value(name: str, **options: Any) -> str:
    return _client().get_parameter_value(name, **options)


def _query(base: Optional[Dict[str, str]] = None, **given: Any) -> Dict[str, str]:
    """`base` and the `given` values that are set, as query text (booleans `true`/`false`)."""
    query = dict(base or {})
    for key, value in given.items():
        if value is not None:
            query[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return query


# Each public function takes its Client method's documentation.
for _name in ("get_secret", "get_secret_string", "get_secret_json", "get_secret_binary", "get_parameter", "get_parameter_value"):
    globals()[_name].__doc__ = getattr(Client, _name).__doc__


def use_with_powertools(client: Optional[Client] = None) -> None:
    """Makes AWS Lambda Powertools' `parameters.get_secret` and `parameters.get_parameter`
    read through the extension (their own cache, `max_age` and `transform` apply on top)."""
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    provider = __getattr__("PowertoolsProvider")
    DEFAULT_PROVIDERS["secrets"] = provider("secrets", client)
    DEFAULT_PROVIDERS["ssm"] = provider("ssm", client)


def __getattr__(name: str) -> Any:
    # `PowertoolsProvider` subclasses Powertools' BaseProvider: built on first use, so this
    # module imports with the standard library alone.
    if name == "PowertoolsProvider":
        cls = _powertools_provider()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def _powertools_provider() -> type:
    from aws_lambda_powertools.utilities.parameters.base import BaseProvider

    class PowertoolsProvider(BaseProvider):
        """A Powertools Parameters provider that reads through the extension: `kind` is
        `"secrets"` (like `SecretsProvider`; `VersionId`/`VersionStage` options) or `"ssm"`
        (like `SSMProvider`; `decrypt`). Listing many (`get_multiple`) is not something the
        extension serves: it raises."""

        def __init__(self, kind: str, client: Optional[Client] = None) -> None:
            if kind not in ("secrets", "ssm"):
                raise ValueError("kind is 'secrets' or 'ssm'")
            super().__init__()
            self.kind = kind
            self._reader = client or _client()

        def __repr__(self) -> str:
            return f"PowertoolsProvider({self.kind!r})"

        def _get(self, name: str, decrypt: Optional[bool] = None, **sdk_options: Any) -> Any:
            if self.kind == "secrets":
                secret = self._reader.get_secret(
                    name, version_id=sdk_options.get("VersionId"), version_stage=sdk_options.get("VersionStage")
                )
                if secret.get("SecretString") is not None:
                    return secret["SecretString"]
                return base64.b64decode(secret["SecretBinary"])
            return self._reader.get_parameter_value(name, with_decryption=decrypt)

        def _get_multiple(self, path: str, **sdk_options: Any) -> Dict[str, str]:
            raise NotImplementedError("the extension reads one item at a time; use SSMProvider for a path")

    return PowertoolsProvider
