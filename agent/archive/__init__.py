"""The archive: every object key (layout), segments and their codec, manifests and the hash chain, the id index,
leases, anchors and verification.
"""
