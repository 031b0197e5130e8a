"""Simulated Agora traffic: realistic recording lifecycles and a signed sender.

``lifecycles`` builds the NCS envelopes one recording produces; ``sender`` signs
them and posts them to a URL with a chosen rate, duplicates, reordering and loss
(the ``agora-callbacks simulate`` command).
"""
