"""Sans-IO GPS week-rollover correction of receiver dates.

GPS broadcasts a 10-bit week number; receivers that resolve it against a fixed firmware epoch
report dates exactly 1024 weeks (about 19.6 years) back once that epoch has passed. A date is
moved forward by whole multiples of 1024 weeks toward a pivot, and only as far as brings it
nearest the pivot: never past it by more than half a period, so a genuine date some years
before the pivot (a Furuno GT-88 reporting its correct 2022 date against a 2026 pivot) stays
as it is, where adding 1024 weeks to every date "earlier than the pivot" (gpsd's rule, and
ours before) made it 2042. The pivot is the later of the package's build date, the newest good
(uncorrected) date seen, and the date of the host clock while the kernel says it is
NTP-synchronised.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

GPS_ROLLOVER = dt.timedelta(weeks=1024)
# The package's build date: no live receiver reports a genuine date before it. Bumped with
# each release; tests/integration/gps/test_gps_rollover.py ties it to debian/changelog.
BUILD_DATE = dt.date(2026, 12, 6)
# A good date advances the pivot only if it is less than half a rollover period beyond it, so
# one corrupt far-future date cannot push every later genuine date 1024 weeks ahead.
MAX_PIVOT_STEP = GPS_ROLLOVER / 2


class RolloverResolver:
    """`resolve(date)` returns the corrected date; counts `rollover_corrected`."""

    def __init__(self, counts: Counter[str] | None = None,
                 pivot: dt.date | None = None) -> None:
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self.pivot = BUILD_DATE if pivot is None else pivot

    def host_date(self, date: dt.date) -> None:
        """The synchronised host clock's UTC date: a pivot as good as a receiver's."""
        if date > self.pivot:
            self.pivot = date

    def resolve(self, date: dt.date) -> dt.date:
        periods = nearest_periods(date, self.pivot)
        if periods > 0:
            self.counts["rollover_corrected"] += 1
            return date + periods * GPS_ROLLOVER
        if self.pivot < date < self.pivot + MAX_PIVOT_STEP:
            self.pivot = date
        return date


def nearest_periods(date: dt.date, pivot: dt.date) -> int:
    """How many whole rollover periods bring `date` nearest `pivot` going forward (0 for a date
    less than half a period before it, or after it): the result is never more than half a
    period past the pivot, and never farther from it than `date` was."""
    behind = (pivot - date).days
    period = GPS_ROLLOVER.days
    return max(0, (behind + period // 2) // period)
