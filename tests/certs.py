"""
Self-signed certificates for the TLS tests (made with cryptography, in a few
milliseconds).
"""

import datetime
import ipaddress

from twisted.python.filepath import FilePath


def makeCertificate(directory, hostname="localhost", addresses=()):
    """
    Write a self-signed certificate for C{hostname} (and the IP
    C{addresses}) and its key into C{directory}: C{cert.pem}, C{key.pem};
    and C{roots/ca.pem}, a trust root directory holding the certificate.

    @return: the directory, a L{FilePath}.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname)]
                + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
            ),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    directory = FilePath(directory)
    directory.makedirs(ignoreExistingDirectory=True)
    certPEM = cert.public_bytes(serialization.Encoding.PEM)
    directory.child("cert.pem").setContent(certPEM)
    directory.child("key.pem").setContent(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    directory.child("roots").makedirs()
    directory.child("roots").child("ca.pem").setContent(certPEM)
    return directory
