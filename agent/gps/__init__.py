"""GPS sources: NMEA 0183 over a serial port (sans-IO decoder + pyserial edge) and gpsd."""

from .decimate import Decimator
from .gpsd import GpsdSource
from .nmea import NmeaDecoder
from .serial_source import SerialGpsSource

__all__ = ["Decimator", "GpsdSource", "NmeaDecoder", "SerialGpsSource"]
