"""The webhook's TLS material: a self-signed CA, and serving certificates it signs.

The API server calls the admission webhook over HTTPS and trusts only the `caBundle` of the
ValidatingWebhookConfiguration, so the controller makes its own small CA (kept in a Secret
that every replica reads, `webhooktls`) and each replica signs its own serving certificate
with it for the Service's DNS names. Keys are ECDSA P-256; certificates carry what Go's
crypto/x509 (the API server) requires: subjectAltName for the names (the CN is ignored),
serverAuth, and a CA with basicConstraints and keyCertSign. Key generation uses the
`cryptography` package's randomness; the clock is a parameter. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = timedelta(days=3650)
SERVING_LIFETIME = timedelta(days=365)
SKEW = timedelta(hours=1)  # backdate, so a node whose clock is a little behind still agrees


class CertificateError(ValueError):
    """PEM text that is not a usable certificate and key."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def not_after(self) -> datetime:
        return x509.load_pem_x509_certificate(self.cert_pem).not_valid_after_utc


def service_names(service: str, namespace: str) -> list[str]:
    """The DNS names a Service is reached by; the API server uses `<svc>.<ns>.svc`."""
    base = f"{service}.{namespace}"
    return [f"{base}.svc", f"{base}.svc.cluster.local", base, service]


def new_ca(now: datetime, common_name: str = "egressgw-webhook-ca") -> KeyPair:
    """A self-signed CA, valid from (now - SKEW) for CA_LIFETIME."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False,
    )
    cert = (
        _builder(name, name, key.public_key(), now, CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def serving_cert(
    ca: KeyPair,
    dns_names: Iterable[str],
    now: datetime,
    ips: Iterable[IPv4Address | IPv6Address] = (),
) -> KeyPair:
    """A server certificate for `dns_names` (and `ips`) signed by `ca`."""
    ca_cert, ca_key = load(ca)
    names = list(dns_names)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ip) for ip in ips]
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=True,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, SERVING_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(_cert_pem(cert), _key_pem(key))


def load(pair: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The certificate and key of a CA pair; CertificateError if they are unusable."""
    try:
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except ValueError as err:
        raise CertificateError(f"unreadable certificate or key: {err}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError("the key is not an ECDSA key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise CertificateError("the key does not belong to the certificate")
    return cert, key


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, now: datetime,
    lifetime: timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - SKEW)
        .not_valid_after(now + lifetime)
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
