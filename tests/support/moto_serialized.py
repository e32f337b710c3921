"""moto's server handling one request at a time (the tests' serialized emulator).

moto_server serves every request on a thread of its own, and moto's backends take no locks, so
two conditional writes racing on moto can both pass. DynamoDB applies each write (and each
transaction) atomically. Served one request at a time, moto is atomic too, which is what a
test of concurrent workers needs. Arguments: host, port.
"""
import os
import sys

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
run_simple(
    host,
    port,
    DomainDispatcherApplication(create_backend_app),
    threaded=False,
    request_handler=MotoRequestHandler,
)
