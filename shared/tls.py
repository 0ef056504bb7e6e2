"""Client-side TLS: one way to build a verifying context, used for every peer.

Certificate and host-name checks are always on; the only choices are whom to
trust (a given CA bundle: the mesh CA, the RDS bundle; or the public roots)
and which client certificate to present, if any.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import certifi


def client_context(
    ca_file: str | Path | None = None,
    *,
    certificate: tuple[str | Path, str | Path] | None = None,
) -> ssl.SSLContext:
    """A TLS 1.2+ client context trusting ``ca_file``, or the public roots,
    presenting ``certificate`` (a certificate and key file) when asked for
    one: mutual TLS."""
    context = ssl.create_default_context(cafile=str(ca_file or certifi.where()))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate is not None:
        context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context
