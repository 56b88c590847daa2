"""``medsight analyze``: a study in, explained findings and a preliminary report out.

The flow: :mod:`.selection` matches model packages to the study's series, :mod:`.plausibility`
checks each chosen image against the model's training data, :mod:`.pipeline` runs the models,
explains and measures, and hands Findings to :mod:`medsight.reporting`.
"""
