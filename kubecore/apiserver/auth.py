"""Bearer-token authentication for the apiserver.

With a token file configured, every request except ``GET /healthz`` must carry
``Authorization: Bearer <token>`` with one of the file's tokens, else it is answered
401 with a ``Status`` body. The file holds one token per line; as in v0.5's token file
a line may go on with ``,user,uid`` after the token; blank lines and ``#`` comments are
skipped.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from kubecore.api import encode_json
from kubecore.apiserver import errors

OPEN_PATHS = frozenset({"/healthz"})


def read_token_file(path: Path) -> frozenset[str]:
    """The tokens in ``path``; ``ValueError`` if it cannot be read or holds none."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read token file {path}: {exc}") from None
    tokens = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        token = line.split(",", 1)[0].strip()
        if token:
            tokens.add(token)
    if not tokens:
        raise ValueError(f"token file {path} holds no token")
    return frozenset(tokens)


class TokenAuth:
    """ASGI middleware admitting requests that present one of ``tokens``."""

    def __init__(self, app: Any, tokens: frozenset[str]) -> None:
        self.app = app
        self.tokens = [token.encode() for token in tokens]

    def _allowed(self, scope: Any) -> bool:
        if scope.get("path") in OPEN_PATHS:
            return True
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                scheme, _, presented = bytes(value).partition(b" ")
                if scheme.lower() != b"bearer":
                    return False
                presented = presented.strip()
                # Compare against every token so timing says nothing about which matched.
                found = False
                for token in self.tokens:
                    found |= hmac.compare_digest(presented, token)
                return found
        return False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = encode_json(errors.unauthorized().to_status())
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="kubecore"')],
        })
        await send({"type": "http.response.body", "body": body})
