"""A fake Apple ID service (Sign in with Apple) served over real HTTP on loopback.

It implements the two endpoints a server-side Sign in with Apple flow calls, with the shapes
of Apple's REST API reference ("Generate and validate tokens", "Fetch Apple's public key"):

    GET   /auth/keys    JWKS of the RSA key id_tokens are signed with
    POST  /auth/token   authorization_code grant -> access/refresh/id token

The authorize step happens in the user's browser, so there is no /auth/authorize here: a test
reads `state` from the app's redirect, asks `issue_code` for a code (what Apple would post
back), and posts both to the app's callback.

The token endpoint checks what Apple checks: grant_type, a known unused code, the
client_id, the redirect_uri the code was issued for (if given), and the client secret, an
ES256 JWT signed with the developer's private key (iss = team id, sub = client id,
aud = https://appleid.apple.com, header kid = key id), verified with the matching public
key. Failures answer 400 with Apple's `{"error": ...}` body.

The id_token is an RS256 JWT with iss = https://appleid.apple.com, aud = client id, sub,
email, email_verified, iat, exp and the key's kid in its header. `issue_code(...,
tamper="forged")` signs it with another key under the same kid; `"expired"` dates it so
its exp has passed.

    with FakeAppleID(client_id=..., team_id=..., key_id=..., client_key=public_pem) as fake:
        use_apple_base_url(fake.url)
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import RSAAlgorithm

ISSUER = "https://appleid.apple.com"
TOKEN_SECONDS = 600
Tamper = Literal["forged", "expired"]


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    form: dict[str, str]


@dataclass
class _Grant:
    email: str
    sub: str
    email_verified: bool
    tamper: Tamper | None
    redirect_uri: str | None
    used: bool = False


class _ClientError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeAppleID:
    def __init__(
        self,
        *,
        client_id: str,
        team_id: str,
        key_id: str,
        client_key: str | ec.EllipticCurvePublicKey,
    ) -> None:
        """`client_key`: the public half of APPLE_PRIVATE_KEY (PEM or key object)."""
        self.client_id = client_id
        self.team_id = team_id
        self.key_id = key_id
        if isinstance(client_key, str):
            loaded = serialization.load_pem_public_key(client_key.encode())
            if not isinstance(loaded, ec.EllipticCurvePublicKey):
                raise TypeError("client_key must be an EC public key")
            client_key = loaded
        self._client_key = client_key
        self.kid = f"fake-{secrets.token_hex(4)}"
        self._signing_key = _rsa_key()
        self._forger_key = _rsa_key()  # not published: tokens it signs must be refused
        self._grants: dict[str, _Grant] = {}
        self._seen: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeAppleID is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAppleID:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fake-apple-id", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeAppleID:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- arranging and inspecting ----------------------------------------------------

    def issue_code(
        self,
        *,
        email: str,
        sub: str | None = None,
        email_verified: bool = True,
        tamper: Tamper | None = None,
        redirect_uri: str | None = None,
    ) -> str:
        """An authorization code, as Apple posts to the callback after the user consents."""
        code = f"c{secrets.token_hex(16)}.0.fake"
        with self._lock:
            self._grants[code] = _Grant(
                email=email, sub=sub or f"000{secrets.randbelow(10**6):06d}.fake",
                email_verified=email_verified, tamper=tamper, redirect_uri=redirect_uri,
            )
        return code

    @property
    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._seen)

    def jwks(self) -> dict[str, Any]:
        jwk = RSAAlgorithm.to_jwk(self._signing_key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        iat = now - 2 * TOKEN_SECONDS if grant.tamper == "expired" else now
        claims = {
            "iss": ISSUER,
            "aud": self.client_id,
            "sub": grant.sub,
            "email": grant.email,
            "email_verified": grant.email_verified,
            "iat": iat,
            "exp": iat + TOKEN_SECONDS,
            "auth_time": iat,
        }
        key = self._forger_key if grant.tamper == "forged" else self._signing_key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    # -- endpoints -------------------------------------------------------------------

    def _token(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != "authorization_code":
            raise _ClientError("unsupported_grant_type")
        if not form.get("code") or not form.get("client_id") or not form.get("client_secret"):
            raise _ClientError("invalid_request")
        if form["client_id"] != self.client_id:
            raise _ClientError("invalid_client")
        self._check_client_secret(form["client_secret"])
        with self._lock:
            grant = self._grants.get(form["code"])
            if grant is None or grant.used:
                raise _ClientError("invalid_grant")
            if grant.redirect_uri is not None and form.get("redirect_uri") != grant.redirect_uri:
                raise _ClientError("invalid_grant")
            grant.used = True
        return {
            "access_token": f"a{secrets.token_hex(16)}.0.fake",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": f"r{secrets.token_hex(16)}.0.fake",
            "id_token": self.id_token(grant),
        }

    def _check_client_secret(self, client_secret: str) -> None:
        try:
            header = jwt.get_unverified_header(client_secret)
            claims = jwt.decode(
                client_secret, self._client_key, algorithms=["ES256"], audience=ISSUER,
                issuer=self.team_id, options={"require": ["iss", "sub", "aud", "iat", "exp"]},
            )
        except jwt.PyJWTError as e:
            raise _ClientError("invalid_client") from e
        if header.get("kid") != self.key_id or claims["sub"] != self.client_id:
            raise _ClientError("invalid_client")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def _record(self, form: dict[str, str]) -> str:
                path = urlsplit(self.path).path
                with fake._lock:
                    fake._seen.append(SeenRequest(self.command, path, form))
                return path

            def do_GET(self) -> None:
                path = self._record({})
                if path == "/auth/keys":
                    self._send(200, fake.jwks())
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                path = self._record(form)
                if path != "/auth/token":
                    self._send(404, {"error": "not_found"})
                    return
                try:
                    self._send(200, fake._token(form))
                except _ClientError as e:
                    self._send(400, {"error": e.error})

        return Handler
