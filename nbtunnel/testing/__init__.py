"""An embedded SSH server for the demo, Binder, and tests on machines without OpenSSH.

``EmbeddedServer`` runs in this process on paramiko's server side, on
loopback only; it is a demo peer, never a production server.
``PrivateService`` is a small web service for it to reach.
"""

from .server import EmbeddedServer
from .services import PrivateService

__all__ = ["EmbeddedServer", "PrivateService"]
