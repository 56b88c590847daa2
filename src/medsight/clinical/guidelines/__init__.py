"""Clinical guidelines as data: versioned, cited rule sets evaluated deterministically.

Three rule sets ship with medsight (``rulesets/*.json``): ``lung-rads`` (ACR Lung-RADS v2022),
``fleischner`` (Fleischner Society 2017, incidental pulmonary nodules) and ``birads-us`` (a
documented subset of BI-RADS breast ultrasound mass assessment).  Each names its source and
what of it was verified.  The format is :mod:`~medsight.clinical.guidelines.model`, the
evaluator :mod:`~medsight.clinical.guidelines.engine`.

Examples
--------
>>> from medsight.clinical.guidelines import evaluate, load_ruleset
>>> r = evaluate(load_ruleset("fleischner"),
...              {"risk": "high", "nodules": [{"type": "solid", "mean_diameter_mm": 7.2}]})
>>> r.category, r.recommendation
('ct-6-12m-then-18-24m', 'CT at 6-12 months, then CT at 18-24 months.')
>>> lesion = {"shape": "oval", "orientation": "parallel", "margin": "circumscribed",
...           "echo_pattern": "hypoechoic", "posterior_features": "none"}
>>> evaluate(load_ruleset("birads-us"), {"lesions": [lesion]}).category
'3'
"""

from medsight.clinical.guidelines.engine import (
    FactsError,
    GuidelineResult,
    ItemResult,
    evaluate,
    list_rulesets,
    load_ruleset,
    matches,
)
from medsight.clinical.guidelines.model import Condition, RuleSet

__all__ = [
    "Condition",
    "FactsError",
    "GuidelineResult",
    "ItemResult",
    "RuleSet",
    "evaluate",
    "list_rulesets",
    "load_ruleset",
    "matches",
]
