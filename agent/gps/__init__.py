"""GPS sources: NMEA 0183 over a serial port or TCP (sans-IO decoder + asyncio edge) and gpsd."""

from .decimate import Decimator
from .gpsd import GpsdSource
from .nmea import NmeaDecoder
from .serial_source import SerialGpsSource
from .tcp_source import TcpGpsSource

__all__ = ["Decimator", "GpsdSource", "NmeaDecoder", "SerialGpsSource", "TcpGpsSource"]
