"""The Python client against a scripted server on loopback: the wire (token, port, query,
one kept-alive connection), the retry on a connection closed before any answer, each error
type, and that no exception or repr carries a value. The client under real Lambda runtimes
and the real extension: tests/python_client.rs."""

import base64
import http.server
import json
import os
import sys
import threading
import unittest
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lambda_secrets_cache as lsc  # noqa: E402

VALUE = "s3cr3t-value-never-in-errors"


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests = []  # (path, query, token header or None, connection id)
        self.script = []  # answers to give, in order: (status, body dict or bytes)
        self.close_idle_after = None  # close a kept-alive connection after this many answers
        self.lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    answered = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        with self.server.lock:
            self.server.requests.append((url.path, query, self.headers.get(lsc.TOKEN_HEADER), id(self.connection)))
            status, body = self.server.script.pop(0) if self.server.script else (200, self.default(url.path, query))
        chunked = status == "chunked"
        status = 200 if chunked else status
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if chunked:
            # Another server's framing: the answer in 3-byte chunks.
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(raw), 3):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(raw[i:i + 3]), raw[i:i + 3]))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        self.answered += 1
        if self.server.close_idle_after and self.answered >= self.server.close_idle_after:
            # As a server that drops idle connections (or a freeze outliving them) leaves it:
            # the client finds out only at its next request.
            self.close_connection = True

    @staticmethod
    def default(path, query):
        if path == "/secretsmanager/get":
            if query["secretId"].startswith("bin"):
                return {"Name": query["secretId"], "SecretBinary": base64.b64encode(b"\x00\x01" + VALUE.encode()).decode(), "SecretString": None}
            if query["secretId"].startswith("json"):
                return {"Name": query["secretId"], "SecretString": json.dumps({"password": VALUE})}
            return {"Name": query["secretId"], "SecretString": VALUE}
        return {"Parameter": {"Name": query["name"], "Value": VALUE, "Version": 3, "Type": "String"}}


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.server = Server()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.env = dict(os.environ)
        for name in lsc.TOKEN_VARIABLES + ("AWS_LAMBDA_INITIALIZATION_TYPE",):
            os.environ.pop(name, None)
        os.environ["AWS_SESSION_TOKEN"] = "session"
        os.environ[lsc.PORT_VARIABLE] = str(self.server.server_address[1])
        self.client = lsc.Client()

    def tearDown(self):
        self.client.close()
        self.server.shutdown()
        self.server.server_close()
        os.environ.clear()
        os.environ.update(self.env)

    def test_every_function_sends_the_documented_request(self):
        c = self.client
        self.assertEqual(c.get_secret("a/b c", version_stage="AWSPREVIOUS", refresh=True)["SecretString"], VALUE)
        self.assertEqual(c.get_secret_string("s", version_id="v1"), VALUE)
        self.assertEqual(c.get_secret_json("json-s"), {"password": VALUE})
        self.assertEqual(c.get_secret_binary("bin-s"), b"\x00\x01" + VALUE.encode())
        self.assertEqual(c.get_parameter("/p", with_decryption=True, version=3)["Parameter"]["Version"], 3)
        self.assertEqual(c.get_parameter_value("/p", label="prod", role_arn="arn:aws:iam::123456789012:role/r"), VALUE)
        paths = [(p, q) for p, q, _, _ in self.server.requests]
        self.assertEqual(paths, [
            ("/secretsmanager/get", {"secretId": "a/b c", "versionStage": "AWSPREVIOUS", "refreshNow": "true"}),
            ("/secretsmanager/get", {"secretId": "s", "versionId": "v1"}),
            ("/secretsmanager/get", {"secretId": "json-s"}),
            ("/secretsmanager/get", {"secretId": "bin-s"}),
            ("/systemsmanager/parameters/get", {"name": "/p", "withDecryption": "true", "version": "3"}),
            ("/systemsmanager/parameters/get", {"name": "/p", "label": "prod", "roleArn": "arn:aws:iam::123456789012:role/r"}),
        ])
        self.assertTrue(all(t == "session" for _, _, t, _ in self.server.requests))
        self.assertEqual(len({conn for *_, conn in self.server.requests}), 1, "one kept-alive connection")

    def test_the_token_and_port_follow_the_extensions_order(self):
        os.environ["AWS_TOKEN"] = "explicit"
        os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "container"
        self.client.get_secret("s")
        os.environ.pop("AWS_TOKEN")
        os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = "snap-start"
        self.client.get_secret("s")
        os.environ.pop("AWS_LAMBDA_INITIALIZATION_TYPE")
        os.environ.pop("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        os.environ["AWS_SESSION_TOKEN"] = ""  # sam local with long-term keys
        self.client.get_secret("s")
        self.assertEqual([t for _, _, t, _ in self.server.requests], ["explicit", "container", ""])
        os.environ.pop("AWS_SESSION_TOKEN")
        with self.assertRaises(lsc.TokenRejected):
            self.client.get_secret("s")

    def test_a_connection_closed_while_idle_is_retried_once_on_a_new_one(self):
        self.server.close_idle_after = 1
        for _ in range(5):
            self.assertEqual(self.client.get_secret_string("s"), VALUE)
        self.assertEqual(len(self.server.requests), 5, "each read reached the server once")

    def test_a_server_that_keeps_resetting_is_an_error_not_a_loop(self):
        self.client.close()
        with socket_server_resetting() as port:
            c = lsc.Client(port=port, timeout=2)
            with self.assertRaises(lsc.ExtensionUnavailable) as raised:
                c.get_secret("s")
            self.assertEqual(raised.exception.status, 0)

    def test_each_error_is_its_own_type_with_status_and_code(self):
        cases = [
            (400, "InvalidRequest", lsc.BadRequest),
            (400, "TooManyRoles", lsc.BadRequest),
            (403, "InvalidToken", lsc.TokenRejected),
            (403, "AccessDeniedException", lsc.AccessDenied),
            (404, "ResourceNotFoundException", lsc.NotFound),
            (400, "ParameterNotFound", lsc.NotFound),
            (400, "ParameterVersionNotFound", lsc.NotFound),
            (400, "AccessDeniedException", lsc.AccessDenied),
            (400, "DecryptionFailure", lsc.BadRequest),
            (429, "ThrottlingException", lsc.Throttled),
            (429, "ConnectionLimitExceeded", lsc.Throttled),
            (500, "MissingRegion", lsc.UpstreamUnavailable),
            (500, "MissingCredentials", lsc.UpstreamUnavailable),
            (502, "ConnectionError", lsc.UpstreamUnavailable),
            (502, "InvalidUpstreamResponse", lsc.UpstreamInvalid),
            (504, "TimeoutError", lsc.UpstreamTimeout),
            (504, "ShuttingDown", lsc.ShuttingDown),
        ]
        for status, code, kind in cases:
            self.server.script.append((status, {"__type": code, "message": f"about {code}"}))
            with self.assertRaises(kind, msg=code) as raised:
                self.client.get_secret("s")
            e = raised.exception
            self.assertEqual((e.status, e.code), (status, code))
            self.assertIn(code, str(e))
        self.server.script.append((502, b"<html>bad gateway</html>"))
        with self.assertRaises(lsc.ExtensionUnavailable):
            self.client.get_secret("s")

    def test_chunked_answers_are_read_and_the_connection_kept(self):
        self.server.script.append(("chunked", {"Name": "s", "SecretString": VALUE}))
        self.assertEqual(self.client.get_secret_string("s"), VALUE)
        self.assertEqual(self.client.get_secret_string("s"), VALUE)
        self.assertEqual(len({conn for *_, conn in self.server.requests}), 1)

    def test_parameter_not_found_is_not_found_when_the_extension_says_404(self):
        self.server.script.append((404, {"__type": "ParameterNotFound", "message": "Parameter /x not found."}))
        with self.assertRaises(lsc.NotFound):
            self.client.get_parameter("/x")

    def test_no_value_in_any_error_or_repr(self):
        with self.assertRaises(lsc.NotAString) as raised:
            self.client.get_secret_binary("s")
        self.assertNotIn(VALUE, str(raised.exception) + repr(raised.exception))
        self.server.script.append((200, {"Name": "s", "SecretString": "{not json " + VALUE}))
        with self.assertRaises(ValueError) as raised:
            self.client.get_secret_json("s")
        e = raised.exception
        self.assertNotIn(VALUE, str(e) + repr(e) + repr(e.__context__) + repr(e.__cause__))
        self.assertNotIn(VALUE, repr(self.client))
        os.environ["AWS_SESSION_TOKEN"] = VALUE
        self.assertNotIn(VALUE, repr(self.client))

    def test_threads_share_the_client(self):
        results = []

        def read():
            for _ in range(20):
                results.append(self.client.get_secret_string("s"))

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [VALUE] * 160)
        self.assertLessEqual(len({conn for *_, conn in self.server.requests}), 8)

    def test_nothing_listening_is_extension_unavailable(self):
        self.server.shutdown()
        self.server.server_close()
        with self.assertRaises(lsc.ExtensionUnavailable) as raised:
            lsc.Client().get_secret("s")
        self.assertEqual(raised.exception.code, "Unreachable")


class socket_server_resetting:
    """A listener that accepts and resets every connection at once."""

    def __enter__(self):
        import socket
        import struct

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.stop = False

        def serve():
            while not self.stop:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.stop = True
        self.sock.close()


if __name__ == "__main__":
    unittest.main()
