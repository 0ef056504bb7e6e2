"""The mesh's development certificate authority: a CA, server and client certificates.

Run ``python -m certs [OUT_DIR]`` to create the set under ``certs/out``.
"""
