"""``medsight analyze``: a study in, explained findings and a preliminary report out.

The flow: :mod:`.selection` matches model packages to the study's series,
:mod:`medsight.models.plausibility` checks each chosen image against the model's training data,
:mod:`.runners` run one package on one image (the intended-use gate, then the findings builder
its task family registers in :mod:`medsight.families`: :mod:`.classification`,
:mod:`.segmentation`), and :mod:`.pipeline` ties it together and hands the Findings to
:mod:`medsight.reporting`.
"""
