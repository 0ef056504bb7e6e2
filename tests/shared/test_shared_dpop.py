"""DPoP proofs (RFC 9449): what a receiver accepts, and each way it refuses
one, always as -32001 with a ``dpop_*`` reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import shared.auth.dpop as dpop_module
from shared.auth.dpop import (
    DpopKey,
    ProofVerifier,
    VerifiedProof,
    b64url_sha256,
    jwk_thumbprint,
    normalize_url,
)
from shared.errors import Unauthenticated
from tests.shared.kit import Clock, unsigned

NOW = 1_700_000_000
URL = "https://extractor.test/a2a"
TOKEN = "eyJ.access.token"
BODY = b'{"jsonrpc":"2.0","id":1,"method":"extract_document","params":{}}'

# RFC 7638, section 3.1: this RSA key has the thumbprint below.
RFC7638_KEY = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhD"
        "R1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6"
        "Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajr"
        "n1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw"
        "0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

PRIVATE = ec.generate_private_key(ec.SECP256R1())
KEY = DpopKey(PRIVATE)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Proofs are made and checked at NOW unless a test moves the clock."""
    fake = Clock(NOW)
    monkeypatch.setattr(dpop_module, "time", fake)
    return fake


@pytest.fixture
def verifier() -> ProofVerifier:
    return ProofVerifier(max_age_seconds=60, leeway_seconds=5)


def proof_claims(**overrides: Any) -> dict[str, Any]:
    """The claims ``KEY`` would sign for ``URL``; None drops a claim."""
    base: dict[str, Any] = {
        "jti": "proof-1",
        "htm": "POST",
        "htu": URL,
        "iat": NOW,
        "ath": b64url_sha256(TOKEN.encode()),
        "body_sha256": b64url_sha256(BODY),
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def forged(
    payload: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = PRIVATE,
    algorithm: str = "ES256",
) -> str:
    """A proof built by hand, for the shapes ``DpopKey`` never makes."""
    headers = {"typ": "dpop+jwt", "jwk": KEY.public_jwk}
    headers.update(header or {})
    return jwt.encode(payload, private, algorithm=algorithm, headers=headers)


def check(
    verifier: ProofVerifier,
    proof: str,
    *,
    method: str = "POST",
    url: str = URL,
    access_token: str | None = TOKEN,
    body: bytes | None = BODY,
) -> VerifiedProof:
    """The receiver's check of ``proof`` against the request it came with."""
    return verifier.verify(
        proof, method=method, url=url, access_token=access_token, body=body
    )


def refusal(verify: Callable[[], object]) -> str:
    with pytest.raises(Unauthenticated) as caught:
        verify()
    assert caught.value.code == -32001
    assert caught.value.data == {"reason": caught.value.reason}
    return caught.value.reason


def good_proof(**options: Any) -> str:
    return KEY.proof("POST", URL, access_token=TOKEN, body=BODY, **options)


def test_proof_for_the_request_is_accepted(verifier: ProofVerifier) -> None:
    proof = good_proof(jti="proof-42")

    assert check(verifier, proof) == VerifiedProof(
        "proof-42", NOW, KEY.thumbprint, b64url_sha256(BODY)
    )


def test_body_is_checked_apart_once_it_has_been_read(
    verifier: ProofVerifier,
) -> None:
    # The gate checks the proof before reading the body, then the body.
    proof = verifier.verify(good_proof(), method="POST", url=URL, access_token=TOKEN)

    verifier.check_body(proof, BODY)
    assert refusal(lambda: verifier.check_body(proof, BODY + b" ")) == (
        "dpop_body_mismatch"
    )


@pytest.mark.parametrize("jti", ["a\x00b", "a\ud800b", "a b", "é"])
def test_proof_jti_that_is_not_printable_ascii_is_invalid(
    verifier: ProofVerifier, jti: str
) -> None:
    # It is stored and logged: PostgreSQL text takes no NUL or lone surrogate.
    assert refusal(lambda: check(verifier, good_proof(jti=jti))) == (
        "dpop_invalid_proof"
    )


def test_proof_for_another_method_is_refused(verifier: ProofVerifier) -> None:
    proof = KEY.proof("GET", URL, access_token=TOKEN, body=BODY)

    assert refusal(lambda: check(verifier, proof)) == "dpop_wrong_method"


@pytest.mark.parametrize(
    "url",
    [
        "https://extractor.test/a2a/other",
        "https://validator.test/a2a",
        "http://extractor.test/a2a",
        "https://extractor.test:8443/a2a",
    ],
    ids=["path", "host", "scheme", "port"],
)
def test_proof_for_another_url_is_refused(verifier: ProofVerifier, url: str) -> None:
    proof = KEY.proof("POST", url, access_token=TOKEN, body=BODY)

    assert refusal(lambda: check(verifier, proof)) == "dpop_wrong_url"


@pytest.mark.parametrize(
    "request_url",
    [
        "https://extractor.test/a2a?task=1",
        "https://extractor.test/a2a#part",
        "https://EXTRACTOR.test:443/a2a",
        "HTTPS://extractor.test/a2a",
    ],
    ids=["query", "fragment", "default-port-and-case", "scheme-case"],
)
def test_request_url_is_compared_without_query_or_default_port(
    verifier: ProofVerifier, request_url: str
) -> None:
    assert check(verifier, good_proof(), url=request_url).thumbprint == KEY.thumbprint


def test_proof_htu_with_a_query_is_compared_without_it(
    verifier: ProofVerifier,
) -> None:
    # RFC 9449, 4.3: htu is the URI without query and fragment; a client that
    # includes them anyway still names the same resource.
    proof = forged(proof_claims(htu="https://extractor.test:443/a2a?x=1"))

    assert check(verifier, proof).jti == "proof-1"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("https://Extractor.TEST/a2a", "https://extractor.test/a2a"),
        ("https://extractor.test:443/a2a", "https://extractor.test/a2a"),
        ("http://extractor.test:80/a2a", "http://extractor.test/a2a"),
        ("http://extractor.test:443/a2a", "http://extractor.test:443/a2a"),
        ("https://extractor.test:8443/a2a", "https://extractor.test:8443/a2a"),
        ("https://extractor.test/a2a?x=1#y", "https://extractor.test/a2a"),
        ("https://extractor.test", "https://extractor.test/"),
        ("https://[::1]:8443/a2a", "https://[::1]:8443/a2a"),
        ("https://extractor.test/A2A", "https://extractor.test/A2A"),
    ],
    ids=[
        "host-case",
        "https-default-port",
        "http-default-port",
        "other-scheme-port",
        "explicit-port",
        "query-fragment",
        "empty-path",
        "ipv6",
        "path-case-kept",
    ],
)
def test_normalize_url(url: str, normal: str) -> None:
    assert normalize_url(url) == normal


@pytest.mark.parametrize(
    "htu",
    [
        "https://user:pass@extractor.test/a2a",
        "https://extractor.test:99999/a2a",
        "https://extractor.test:x/a2a",
    ],
    ids=["user-info", "port-out-of-range", "port-not-a-number"],
)
def test_proof_htu_that_is_no_request_url_matches_nothing(
    verifier: ProofVerifier, htu: str
) -> None:
    # Never read as the service's own URL (a bad port is not "no port").
    proof = forged(proof_claims(htu=htu))

    assert refusal(lambda: check(verifier, proof)) == "dpop_wrong_url"


def test_proof_with_a_critical_header_extension_is_refused(
    verifier: ProofVerifier,
) -> None:
    # RFC 7515 4.1.11: an unknown critical extension must not be ignored.
    proof = forged(proof_claims(), header={"crit": ["exp"], "exp": 1})

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_proof"


def test_proof_older_than_max_age_and_leeway_is_stale(
    verifier: ProofVerifier,
) -> None:
    proof = good_proof(issued_at=NOW - 66)

    assert refusal(lambda: check(verifier, proof)) == "dpop_stale_proof"


def test_proof_as_old_as_max_age_and_leeway_is_accepted(
    verifier: ProofVerifier,
) -> None:
    assert check(verifier, good_proof(issued_at=NOW - 65)).issued_at == NOW - 65


def test_proof_from_the_future_beyond_leeway_is_not_yet_valid(
    verifier: ProofVerifier,
) -> None:
    proof = good_proof(issued_at=NOW + 6)

    assert refusal(lambda: check(verifier, proof)) == "dpop_not_yet_valid"


def test_proof_from_the_future_within_leeway_is_accepted(
    verifier: ProofVerifier,
) -> None:
    assert check(verifier, good_proof(issued_at=NOW + 5)).issued_at == NOW + 5


def test_proof_goes_stale_as_time_passes(verifier: ProofVerifier, clock: Clock) -> None:
    proof = good_proof()
    clock.advance(66)

    assert refusal(lambda: check(verifier, proof)) == "dpop_stale_proof"


@pytest.mark.parametrize("iat", [str(NOW), float(NOW) + 0.5, True], ids=repr)
def test_proof_iat_not_an_integer_is_invalid(
    verifier: ProofVerifier, iat: object
) -> None:
    proof = forged(proof_claims(iat=iat))

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_proof"


def test_proof_for_another_token_is_refused(verifier: ProofVerifier) -> None:
    proof = KEY.proof("POST", URL, access_token="another.access.token", body=BODY)

    assert refusal(lambda: check(verifier, proof)) == "dpop_token_mismatch"


def test_proof_without_ath_is_refused_when_a_token_is_sent(
    verifier: ProofVerifier,
) -> None:
    proof = KEY.proof("POST", URL, body=BODY)

    assert refusal(lambda: check(verifier, proof)) == "dpop_token_mismatch"


def test_proof_for_a_token_request_needs_no_ath(verifier: ProofVerifier) -> None:
    # At the token endpoint there is no token yet to hash.
    proof = KEY.proof("POST", URL)

    assert check(verifier, proof, access_token=None, body=None).jti


def test_proof_over_another_body_is_refused(verifier: ProofVerifier) -> None:
    proof = KEY.proof("POST", URL, access_token=TOKEN, body=b'{"method":"other"}')

    assert refusal(lambda: check(verifier, proof)) == "dpop_body_mismatch"


@pytest.mark.parametrize("body", [BODY, b""], ids=["body", "empty-body"])
def test_proof_without_body_hash_is_refused_when_the_body_is_checked(
    verifier: ProofVerifier, body: bytes
) -> None:
    proof = KEY.proof("POST", URL, access_token=TOKEN)

    assert refusal(lambda: check(verifier, proof, body=body)) == "dpop_body_mismatch"


def test_proof_carrying_a_private_key_is_refused(verifier: ProofVerifier) -> None:
    # A client that leaks its private key in every header holds no secret.
    private_jwk = ECAlgorithm.to_jwk(PRIVATE, as_dict=True)
    proof = forged(proof_claims(), header={"jwk": private_jwk})

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_key"


@pytest.mark.parametrize(
    "jwk",
    [None, "key", {"kty": "EC", "crv": "P-256", "x": KEY.public_jwk["x"]}],
    ids=["absent", "not-an-object", "no-y"],
)
def test_proof_without_a_usable_public_key_is_refused(
    verifier: ProofVerifier, jwk: object
) -> None:
    proof = forged(proof_claims(), header={"jwk": jwk})

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_key"


def test_proof_signed_with_hs256_is_refused(verifier: ProofVerifier) -> None:
    proof = jwt.encode(
        proof_claims(),
        "a-shared-secret-of-thirty-two-bytes!",
        algorithm="HS256",
        headers={"typ": "dpop+jwt", "jwk": KEY.public_jwk},
    )

    assert refusal(lambda: check(verifier, proof)) == "dpop_algorithm_not_allowed"


def test_unsigned_proof_is_refused(verifier: ProofVerifier) -> None:
    proof = unsigned(
        {"alg": "none", "typ": "dpop+jwt", "jwk": KEY.public_jwk}, proof_claims()
    )

    assert refusal(lambda: check(verifier, proof)) == "dpop_algorithm_not_allowed"


def test_hs256_cannot_be_allowed_by_configuration() -> None:
    verifier = ProofVerifier(algorithms=frozenset({"ES256", "HS256"}))
    proof = jwt.encode(
        proof_claims(),
        "a-shared-secret-of-thirty-two-bytes!",
        algorithm="HS256",
        headers={"typ": "dpop+jwt", "jwk": KEY.public_jwk},
    )

    assert refusal(lambda: check(verifier, proof)) == "dpop_algorithm_not_allowed"


def test_proof_whose_key_type_does_not_fit_the_algorithm_is_refused(
    verifier: ProofVerifier,
) -> None:
    # Refused on the header alone: RS256 with an EC key is never verified.
    header = {"alg": "RS256", "typ": "dpop+jwt", "jwk": KEY.public_jwk}
    proof = unsigned(header, proof_claims()) + "c2lnbmF0dXJl"

    assert refusal(lambda: check(verifier, proof)) == "dpop_algorithm_not_allowed"


@pytest.mark.parametrize("typ", [None, "JWT", "DPoP+JWT"], ids=repr)
def test_proof_without_the_dpop_type_is_refused(
    verifier: ProofVerifier, typ: str | None
) -> None:
    # An access token or ID token must not pass as a proof.
    proof = forged(proof_claims(), header={"typ": typ})
    assert jwt.get_unverified_header(proof).get("typ") == typ

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_proof"


def test_proof_signed_by_another_key_than_it_names_is_refused(
    verifier: ProofVerifier,
) -> None:
    proof = forged(proof_claims(), private=ec.generate_private_key(ec.SECP256R1()))

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_proof"


@pytest.mark.parametrize("claim", ["jti", "htm", "htu", "iat"])
def test_proof_missing_a_required_claim_is_invalid(
    verifier: ProofVerifier, claim: str
) -> None:
    proof = forged(proof_claims(**{claim: None}))

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_proof"


@pytest.mark.parametrize("jti", ["", "j" * 129, 42], ids=["empty", "129-chars", "int"])
def test_proof_with_an_unusable_jti_is_invalid(
    verifier: ProofVerifier, jti: object
) -> None:
    proof = forged(proof_claims(jti=jti))

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_proof"


@pytest.mark.parametrize(
    "proof", ["", "not-a-jwt", "a.b.c"], ids=["empty", "one-part", "garbage"]
)
def test_proof_that_is_not_a_jwt_is_invalid(
    verifier: ProofVerifier, proof: str
) -> None:
    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_proof"


def test_proof_signed_with_an_rsa_key_is_accepted(verifier: ProofVerifier) -> None:
    private = rsa.generate_private_key(65537, 2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    proof = forged(
        proof_claims(), header={"jwk": jwk}, private=private, algorithm="PS256"
    )

    assert check(verifier, proof).thumbprint == jwk_thumbprint(jwk)


def b64json(part: dict[str, Any]) -> str:
    raw = json.dumps(part, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_es256_proof_with_a_key_on_another_curve_is_refused(
    verifier: ProofVerifier,
) -> None:
    # ES256 means P-256; a P-384 key signing "ES256" is not what it claims.
    private = ec.generate_private_key(ec.SECP384R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    # PyJWT will not make such a proof, so it is signed by hand.
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
    signing_input = f"{b64json(header)}.{b64json(proof_claims())}"
    der = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    proof = f"{signing_input}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"

    assert refusal(lambda: check(verifier, proof)) == "dpop_invalid_key"


def test_proof_algorithms_can_be_narrowed() -> None:
    verifier = ProofVerifier(algorithms=frozenset({"RS256"}))

    assert refusal(lambda: check(verifier, good_proof())) == (
        "dpop_algorithm_not_allowed"
    )


def test_thumbprint_matches_the_rfc_7638_example() -> None:
    assert jwk_thumbprint(RFC7638_KEY) == RFC7638_THUMBPRINT


def test_thumbprint_ignores_members_outside_the_key() -> None:
    plain = {"kty": "RSA", "n": RFC7638_KEY["n"], "e": "AQAB"}

    assert jwk_thumbprint(plain) == RFC7638_THUMBPRINT


def test_thumbprint_of_a_dpop_key_is_that_of_its_public_jwk() -> None:
    public = ECAlgorithm.to_jwk(PRIVATE.public_key(), as_dict=True)

    assert KEY.thumbprint == jwk_thumbprint(public)
    assert KEY.thumbprint != DpopKey().thumbprint


@pytest.mark.parametrize(
    "jwk",
    [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "RSA", "e": "AQAB"}, {"kty": "RSA"}],
    ids=["symmetric", "no-modulus", "bare"],
)
def test_thumbprint_of_something_not_a_public_key_is_a_value_error(
    jwk: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="not an EC or RSA public key"):
        jwk_thumbprint(jwk)


def test_proof_jti_may_be_forgotten_once_the_proof_would_be_stale(
    verifier: ProofVerifier,
) -> None:
    proof = check(verifier, good_proof())

    assert verifier.expiry_of(proof) == NOW + 60 + 5
