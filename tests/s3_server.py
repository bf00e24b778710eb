"""moto's S3 server, on loopback, answering one request at a time.

moto checks a write's ``If-Match`` / ``If-None-Match`` and then writes, and the threads of its server can
interleave between the two: two conditional writes of one key could both succeed, which S3 never allows. One
request at a time makes each conditional write atomic, as on S3, so the lake's lease tests test the lease.
Usage: ``python -m tests.s3_server PORT``."""

import os
import signal
import sys
import threading

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


def one_at_a_time(app):
    lock = threading.Lock()

    def handle(environ, start_response):
        with lock:
            return list(app(environ, start_response))

    return handle


if __name__ == "__main__":
    # the test runner's processes may ignore SIGTERM, and a child inherits that: stop on it whatever was inherited
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple("127.0.0.1", port, one_at_a_time(DomainDispatcherApplication(create_backend_app)), threaded=True,
               request_handler=MotoRequestHandler)
