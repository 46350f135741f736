"""The archive: every object key (layout), segments and their codec, sidecars, intents and quarantine,
manifests and the hash chain, the id index, leases, anchors and verification.
"""
