"""Bulk transfer: the sans-IO reliability core (ranges, sender window, receiver tracker).

The C data path moves the frames; this package decides which chunk ranges to send, detects loss
and builds FEEDBACK, once per batch and once per FEEDBACK, never per frame (issue 5).
"""
