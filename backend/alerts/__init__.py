"""Alerts (docs/alerts.md): rules (`rules`), the sans-IO evaluator (`evaluate`), the engine that
runs it after each commit and on a timer (`engine`), and the HTTP routes (`routes`)."""

from .engine import AlertEngine, NoAlerts
from .evaluate import Episode, Evaluator, Fence
from .rules import RuleSet, parse_rules

__all__ = ["AlertEngine", "Episode", "Evaluator", "Fence", "NoAlerts", "RuleSet", "parse_rules"]
