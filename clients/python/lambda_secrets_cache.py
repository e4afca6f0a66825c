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
import http.client
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


# What a kept-alive connection the server closed looks like, before any answer.
_CLOSED = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class Client:
    """Reads through the extension on 127.0.0.1. Thread-safe: each read takes an idle
    connection (or opens one) and gives it back once the answer is read, so sequential reads
    share one connection. `port` and `timeout` (seconds per read) default to the environment
    (`PARAMETERS_SECRETS_EXTENSION_HTTP_PORT`, else 2773) and 10 s."""

    def __init__(self, port: Optional[int] = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._port = port
        self._timeout = timeout
        self._idle: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"Client(port={self._port or _port()}, timeout={self._timeout})"

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
        query = {"secretId": secret_id}
        if version_stage is not None:
            query["versionStage"] = version_stage
        if version_id is not None:
            query["versionId"] = version_id
        if refresh:
            query["refreshNow"] = "true"
        if role_arn is not None:
            query["roleArn"] = role_arn
        return self._get("/secretsmanager/get", query)

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
        query = {"name": name}
        if with_decryption is not None:
            query["withDecryption"] = "true" if with_decryption else "false"
        if version is not None:
            query["version"] = str(int(version))
        if label is not None:
            query["label"] = label
        if refresh:
            query["refreshNow"] = "true"
        if role_arn is not None:
            query["roleArn"] = role_arn
        return self._get("/systemsmanager/parameters/get", query)

    def get_parameter_value(self, name: str, **options: Any) -> str:
        """The parameter's `Value`."""
        return self.get_parameter(name, **options)["Parameter"]["Value"]

    # --- the wire ---

    def _get(self, path: str, query: Dict[str, str]) -> Dict[str, Any]:
        target = path + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        headers = {TOKEN_HEADER: _token()}
        status, body = self._exchange(target, headers)
        if status != 200:
            raise _error(status, body)
        try:
            answer = json.loads(body)
        except ValueError:
            raise ExtensionUnavailable(status, "NotJson", "the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ExtensionUnavailable(status, "NotJson", "the answer is not a JSON object")
        return answer

    def _exchange(self, target: str, headers: Dict[str, str]) -> "tuple[int, bytes]":
        conn, reused = self._take()
        try:
            try:
                status, body = self._once(conn, target, headers)
            except _CLOSED:
                # Closed or reset before any answer (a kept-alive connection across a freeze):
                # a GET is safe to send again, once, on a new connection.
                conn.close()
                conn, reused = self._new(), False
                status, body = self._once(conn, target, headers)
        except socket.timeout:
            conn.close()
            raise ExtensionUnavailable(0, "ClientTimeout", f"no answer within {self._timeout} s") from None
        except OSError as e:
            conn.close()
            raise ExtensionUnavailable(0, "Unreachable", f"cannot reach the extension: {e.strerror or type(e).__name__}") from None
        except http.client.HTTPException as e:
            conn.close()
            raise ExtensionUnavailable(0, "BadAnswer", f"the answer is not HTTP ({type(e).__name__})") from None
        self._give_back(conn)
        return status, body

    def _once(self, conn: http.client.HTTPConnection, target: str, headers: Dict[str, str]) -> "tuple[int, bytes]":
        if conn.sock is None:
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.will_close:
            conn.close()
        return response.status, body

    def _new(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self._port or _port(), timeout=self._timeout)

    def _take(self) -> "tuple[http.client.HTTPConnection, bool]":
        with self._lock:
            if self._pid != os.getpid():
                # A forked child does not share its parent's sockets.
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop(), True
        return self._new(), False

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:
            return
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
