"""Cross-origin isolation for the app's pages, so that the browser's WASM runs multi-threaded.

onnxruntime-web (the Browser tab) uses threads only where SharedArrayBuffer exists, which a
browser grants only to a cross-origin-isolated page: one served with
`Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy` set, every subresource
and worker script it loads allowed by that embedder policy. The middleware sets both headers on
every HTTP response of the app (Gradio's page and assets, the component's modules, the npm dists,
the local model files, the API): a worker script needs them as much as the page. `credentialless`
(the default) lets the page still load cross-origin resources that send no
Cross-Origin-Resource-Policy (they are fetched without cookies); `require-corp` blocks them.
Where a browser does not grant isolation (a page inside another site's iframe, as on a Space's
Hub page, or a browser without `credentialless`), the page works as before, single-threaded.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EMBEDDER_POLICIES = ("credentialless", "require-corp")


class CrossOriginIsolation:
    """ASGI middleware adding COOP `same-origin` and COEP `embedder_policy` to every HTTP response
    (a header the route set itself is kept)."""

    def __init__(self, app: ASGIApp, embedder_policy: str = "credentialless"):
        if embedder_policy not in EMBEDDER_POLICIES:
            raise ValueError(f"embedder policy must be one of {EMBEDDER_POLICIES}, not {embedder_policy!r}")
        self.app = app
        self.embedder_policy = embedder_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_isolated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Embedder-Policy", self.embedder_policy)
            await send(message)

        await self.app(scope, receive, send_isolated)


def isolation_middleware(embedder_policy: str) -> list[Middleware]:
    """The app's middleware list for FastAPI(middleware=...): empty when isolation is "off"."""
    return [] if embedder_policy == "off" else [Middleware(CrossOriginIsolation, embedder_policy=embedder_policy)]
