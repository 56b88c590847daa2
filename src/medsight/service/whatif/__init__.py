"""What-if tools for a clinician looking at a finding (issue 22): ask, re-run, compare.

* :mod:`.occlusion`: occlude or keep a drawn region and re-run a classifier on the changed
  image (with an on-demand MONAI occlusion-sensitivity map);
* :mod:`.risk`: change a risk model's clinical inputs, validated against what the model
  declares, and see the risk move;
* :mod:`.segedit`: brush / erase / re-threshold a job's segmentation, get its measurements and
  a new DICOM SEG version (the original kept untouched), with an edit record in the store.

Every tool re-runs the package the job used, on the image it ran on
(:func:`.source.package_image`), through the same intended-use gate as the analysis, so a
changed image that falls outside it is *withheld* with its reasons, never scored.  The HTTP
side (roles, audit) is :mod:`medsight.service.routes.whatif`.
"""
