"""Explanations: saliency and class-activation maps returned as Images on the input's grid."""

from medsight.explain.cam import ExplainMethod, explain_classifier, last_conv_layer

__all__ = ["ExplainMethod", "explain_classifier", "last_conv_layer"]
