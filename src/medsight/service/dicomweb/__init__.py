"""A DICOMweb front (QIDO-RS, WADO-RS, STOW-RS) of the service's own store.

It serves each study's received instances together with the DICOM SEG, SR and SC objects its
finished analysis jobs wrote, under the study's UID, so a DICOMweb viewer (OHIF) shows images
and AI results side by side.  :mod:`.index` finds and reads the instances, :mod:`.query`
matches QIDO-RS keys, :mod:`.multipart` writes and reads ``multipart/related`` bodies; the
routes are in :mod:`medsight.service.routes.dicomweb`.
"""
