"""Alerts (docs/alerts.md): rules (`rules`), the sans-IO evaluator (`evaluate`), the engine that
runs it after each commit and on a timer (`engine`), and the HTTP routes (`routes`).

The names below load their module when first used (PEP 562), so that reading the `[alerts]`
table (`backend.alerts.rules`, which every backend command does to check its configuration)
does not import the engine and its geometry library (shapely, numpy)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import AlertEngine, NoAlerts
    from .evaluate import Episode, Evaluator, Fence
    from .rules import RuleSet, parse_rules

_MODULE_OF = {"AlertEngine": "engine", "NoAlerts": "engine", "Episode": "evaluate",
              "Evaluator": "evaluate", "Fence": "evaluate", "RuleSet": "rules",
              "parse_rules": "rules"}

__all__ = ["AlertEngine", "Episode", "Evaluator", "Fence", "NoAlerts", "RuleSet", "parse_rules"]


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value
