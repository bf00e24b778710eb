"""A fake OpenAI-compatible chat endpoint on loopback, for the judge tests."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reply(handler: BaseHTTPRequestHandler, code: int, content: str = "", extra_headers: dict | None = None) -> None:
    """Answer a chat-completion request: ``content`` as the assistant's message, or an error body."""
    handler.rfile.read(int(handler.headers["Content-Length"]))
    body = {"error": {"message": "refused"}} if code != 200 else {
        "id": "x", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}
    data = json.dumps(body).encode()
    handler.send_response(code)
    for key, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                       **(extra_headers or {})}.items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(data)


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """The endpoint's base URL while ``handler`` serves on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
