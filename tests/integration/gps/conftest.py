"""The NMEA fixtures of the GPS unit tests, for the tests here that feed real devices."""

from tests.unit.agent.gps.conftest import corpus, nmea, with_checksum  # noqa: F401
