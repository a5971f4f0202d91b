"""geostream/1.0: the wire protocol between the fleet agent and the gateway (docs/protocol.md).

Sans-IO: nothing here touches sockets, clocks or threads.
"""

ALPN = "geostream/1.0"
PROTOCOL_VERSION = 1
