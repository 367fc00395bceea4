"""TLS: the server's SSLContext, the handshake, and the ASGI TLS extension.

One context is built per server from the configuration, before anything is
bound, so a bad certificate stops the start with a ConfigError naming the
option. Every accepted connection then runs its own handshake under a
deadline; a client that fails it is dropped and logged at debug level,
never an error of the server.
"""

from __future__ import annotations

import re
import socket
import ssl
import weakref
from dataclasses import dataclass
from typing import Any, Final

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from .._asgi.types import TLSExtension
from ..config import Config
from ..errors import ConfigError
from .logging import error_logger
from .transport import open_tls_stream, wrap_tls

__all__ = [
    "ALPN_PROTOCOLS",
    "accept_tls",
    "certificate_subject",
    "create_ssl_context",
    "h2_forbidden_ciphers",
    "negotiated_protocol",
    "tls_extension",
]

#: What ALPN offers, in our order of preference: the server picks (RFC 7301
#: 3.2), so a client that speaks both gets HTTP/2.
ALPN_PROTOCOLS: Final = ("h2", "http/1.1")

#: The TLS 1.2 suites when no cipher string is configured: ephemeral key
#: exchange with an AEAD cipher only. RFC 9113 9.2.2 lets an HTTP/2 peer
#: refuse every suite of its Appendix A (all CBC, static RSA and non-AEAD
#: suites), and Python's default string still enables some (the CBC ones),
#: so one ALPN port for h2 and http/1.1 needs this narrower list. TLS 1.3
#: suites are all AEAD and are not set by cipher strings.
_DEFAULT_CIPHERS: Final = (
    "@SECLEVEL=2:ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!aDSS"
)

_VERIFY_MODES: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}

#: ProtocolVersion as it travels on the wire (RFC 5246 A.1, RFC 8446 4.2.1);
#: the ASGI TLS extension reports these numbers.
_TLS_VERSIONS: Final = {
    "TLSv1": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}

_PEM_CERTIFICATE: Final = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)
#: Ends the BEGIN line of every PEM private key: PKCS#8, encrypted, RSA, EC.
_PEM_PRIVATE_KEY: Final = b"PRIVATE KEY-----"
#: OpenSSL's message without the "[LIB]" prefix and the "(_ssl.c:N)" suffix.
_SSL_MESSAGE: Final = re.compile(r"^(?:\[\w+\]\s*)?(.*?)(?:\s*\(_ssl\.c:\d+\))?$")

#: Errors a client can cause during the handshake (ssl.SSLError is an OSError).
_HANDSHAKE_ERRORS: Final = (
    OSError,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
)


@dataclass(frozen=True, slots=True)
class _ContextFacts:
    """What the TLS extension reports that does not change per connection."""

    server_cert: str
    #: OpenSSL cipher name -> the suite's 16-bit IANA number.
    cipher_suites: dict[str, int]


# Keyed by the context rather than carried on a subclass of it: anyio runs
# wrap_bio in a worker thread for anything but a plain ssl.SSLContext.
_FACTS: Final[weakref.WeakKeyDictionary[ssl.SSLContext, _ContextFacts]] = (
    weakref.WeakKeyDictionary()
)


class _PasswordMissing(Exception):
    """Raised from the password callback: the key is encrypted and no password is set."""


# -- the context --------------------------------------------------------------


def create_ssl_context(config: Config) -> ssl.SSLContext | None:
    """The server's SSLContext, or None when ``config.certfile`` is unset.

    TLS 1.2 and later, ALPN offering ``h2`` (unless ``config.http2`` is off)
    then ``http/1.1``, no compression or renegotiation (RFC 9113 9.2.1).
    Reads the certificate, key and CA files (blocking, once, at startup);
    any problem with them is a :class:`~tricorn.errors.ConfigError` naming
    the option, with the reason the OS or OpenSSL gave.
    """
    if config.certfile is None:
        return None
    chain = _read("certfile", config.certfile)
    server_cert = _first_certificate(config.certfile, chain)
    if config.keyfile is not None:
        key = _read("keyfile", config.keyfile)
        if _PEM_PRIVATE_KEY not in key:
            raise ConfigError("keyfile", f"{config.keyfile!r} holds no PEM private key")
    elif _PEM_PRIVATE_KEY not in chain:
        raise ConfigError("keyfile", f"not set, and {config.certfile!r} holds no private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    # With HTTP/2 off, ALPN must not let a client pick h2 it would not get.
    context.set_alpn_protocols(list(ALPN_PROTOCOLS if config.http2 else ALPN_PROTOCOLS[1:]))
    _load_key_pair(context, config)
    _set_ciphers(context, config.ciphers)
    if config.ca_certs is not None:
        try:
            context.load_verify_locations(cafile=config.ca_certs)
        except ssl.SSLError as exc:
            raise ConfigError(
                "ca_certs", f"no CA certificate in {config.ca_certs!r}: {_ssl_reason(exc)}"
            ) from None
        except OSError as exc:
            raise ConfigError(
                "ca_certs", f"cannot read {config.ca_certs!r}: {exc.strerror or exc}"
            ) from None
    context.verify_mode = _VERIFY_MODES[config.verify_mode]
    _FACTS[context] = _ContextFacts(
        server_cert=server_cert,
        cipher_suites=_cipher_suites(context),
    )
    return context


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc.strerror or exc}") from None


def _first_certificate(path: str, chain: bytes) -> str:
    """The leaf certificate of a PEM chain, re-encoded; checks that the chain parses."""
    match = _PEM_CERTIFICATE.search(chain)
    if match is None:
        raise ConfigError("certfile", f"{path!r} holds no PEM certificate")
    try:
        # Parsing every certificate here tells a bad chain from a bad key,
        # which load_cert_chain reports alike ("PEM lib").
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(
            cadata=chain.decode("latin-1")
        )
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(match.group().decode("ascii")))
    except (ssl.SSLError, ValueError) as exc:
        reason = _ssl_reason(exc) if isinstance(exc, ssl.SSLError) else str(exc)
        raise ConfigError(
            "certfile", f"{path!r} holds a certificate that does not parse: {reason}"
        ) from None


def _load_key_pair(context: ssl.SSLContext, config: Config) -> None:
    assert config.certfile is not None
    key = "keyfile" if config.keyfile is not None else "certfile"
    keyfile = config.keyfile or config.certfile
    asked = False

    def password() -> str:
        # Always a callback: without one OpenSSL would prompt on the terminal
        # for an encrypted key and hang a server started by a supervisor.
        nonlocal asked
        asked = True
        if config.keyfile_password is None:
            raise _PasswordMissing
        return config.keyfile_password

    try:
        context.load_cert_chain(config.certfile, config.keyfile, password)
    except _PasswordMissing:
        raise ConfigError(
            "keyfile_password", f"the private key in {keyfile!r} is encrypted; give its password"
        ) from None
    except ssl.SSLError as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            message = f"the private key in {keyfile!r} does not match the certificate"
        elif asked:
            raise ConfigError(
                "keyfile_password", f"cannot decrypt the private key in {keyfile!r}"
            ) from None
        else:
            message = f"no usable private key in {keyfile!r} ({_ssl_reason(exc)})"
        raise ConfigError(key, message) from None
    except ValueError as exc:  # a password longer than OpenSSL takes
        raise ConfigError("keyfile_password", str(exc)) from None
    except OSError as exc:  # the file went away since it was read
        raise ConfigError(key, f"cannot read {keyfile!r}: {exc.strerror or exc}") from None


def _set_ciphers(context: ssl.SSLContext, ciphers: str | None) -> None:
    if ciphers is None:
        context.set_ciphers(_DEFAULT_CIPHERS)
        return
    try:
        context.set_ciphers(ciphers)
    except ssl.SSLError:
        raise ConfigError("ciphers", f"{ciphers!r} selects no cipher suite OpenSSL knows") from None


def h2_forbidden_ciphers(context: ssl.SSLContext) -> list[str]:
    """The enabled TLS 1.2 suites an HTTP/2 peer may refuse (RFC 9113 9.2.2).

    The list of RFC 9113 Appendix A amounts to every suite that lacks an
    ephemeral key exchange or an AEAD cipher; that is the rule applied
    here. Empty for the default cipher string.
    """
    return [
        cipher["name"]
        for cipher in context.get_ciphers()
        if cipher["protocol"] != "TLSv1.3"
        and not (cipher["aead"] and cipher["kea"] in ("kx-ecdhe", "kx-dhe"))
    ]


def _cipher_suites(context: ssl.SSLContext) -> dict[str, int]:
    # OpenSSL ids are 0x0300XXXX; the low 16 bits are the IANA number.
    return {cipher["name"]: cipher["id"] & 0xFFFF for cipher in context.get_ciphers()}


def _ssl_reason(exc: ssl.SSLError) -> str:
    # Not every SSLError carries a reason (set_ciphers' does not).
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    match = _SSL_MESSAGE.match(str(exc.args[-1]))
    return match.group(1) if match else str(exc)


# -- the handshake ------------------------------------------------------------


async def accept_tls(
    source: anyio.abc.ByteStream | socket.socket,
    context: ssl.SSLContext,
    # A late handshake is a client to drop (None), not a cancelled call: the
    # deadline is this function's own policy, so it is a parameter.
    timeout: float,  # noqa: ASYNC109
    write_timeout: float = 30.0,
) -> anyio.abc.ByteStream | None:
    """The server side of the handshake within ``timeout`` seconds.

    ``source`` is an accepted socket (the transport then picks how: the
    event loop's own TLS on asyncio and uvloop) or a stream already open on
    one (after a PROXY header: anyio's TLS over it). Returns the TLS
    stream, or None when the client failed the handshake or did not finish
    it in time; ``source`` is closed then. A bad client is logged at debug
    level and never raises; cancellation does, after closing ``source``.
    """
    peer = _peer(source)
    tls: anyio.abc.ByteStream | None = None
    reason = f"not done within {timeout:g}s"
    try:
        with anyio.move_on_after(timeout):
            try:
                if isinstance(source, socket.socket):
                    tls = await open_tls_stream(source, context, write_timeout, timeout)
                else:
                    tls = await wrap_tls(source, context)
            except _HANDSHAKE_ERRORS as exc:
                reason = _handshake_failure(exc)
    finally:
        if tls is None:
            if isinstance(source, socket.socket):
                source.close()
            else:
                await anyio.aclose_forcefully(source)
    if tls is None:
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a client"
        error_logger.debug("TLS handshake with %s failed: %s", client, reason)
    return tls


def _peer(source: anyio.abc.ByteStream | socket.socket) -> Any:
    if isinstance(source, socket.socket):
        try:
            return source.getpeername()
        except OSError:
            return None
    return source.extra(anyio.abc.SocketAttribute.remote_address, None)


def _handshake_failure(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"client certificate refused: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return _ssl_reason(exc)
    if isinstance(exc, anyio.EndOfStream):
        return "the client closed the connection"
    cause = exc.__cause__ or exc
    return f"the connection broke: {cause!r}"


# -- what the handshake decided -------------------------------------------------


def negotiated_protocol(stream: anyio.abc.ByteStream) -> str | None:
    """The protocol ALPN chose: ``"h2"``, ``"http/1.1"``, or None (no TLS, or no ALPN)."""
    protocol = stream.extra(TLSAttribute.alpn_protocol, None)
    return protocol if protocol in ALPN_PROTOCOLS else None


def tls_extension(stream: anyio.abc.ByteStream) -> TLSExtension | None:
    """The ASGI TLS extension for this connection; None when it is not TLS.

    Computed once per connection (the handshake settles all of it). The
    spec forbids the extension on a connection without TLS.
    """
    ssl_object = stream.extra(TLSAttribute.ssl_object, None)
    if ssl_object is None:
        return None
    facts = _FACTS.get(ssl_object.context)
    leaf = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    suites = facts.cipher_suites if facts is not None else _cipher_suites(ssl_object.context)
    return {
        "server_cert": facts.server_cert if facts is not None else None,
        "client_cert_chain": [
            ssl.DER_cert_to_PEM_cert(der) for der in _client_chain(ssl_object, leaf)
        ],
        "client_cert_name": certificate_subject(leaf) if leaf else None,
        # A certificate that fails verification fails the handshake, so a
        # connection that got this far has none to report.
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": suites.get(cipher[0]) if cipher is not None else None,
    }


def _client_chain(ssl_object: ssl.SSLObject, leaf: bytes | None) -> list[bytes]:
    """The client's certificate, then the chain it sent, DER-encoded."""
    if not leaf:
        return []
    # Python 3.13 gives the chain the client sent; before, only its certificate.
    unverified = getattr(ssl_object, "get_unverified_chain", None)
    chain = [bytes(der) for der in (unverified() or [])] if unverified is not None else []
    if not chain or chain[0] != leaf:
        chain.insert(0, leaf)
    return chain


# -- RFC 4514 names -------------------------------------------------------------

#: The attribute types RFC 4514 3 gives a short name; others are written as
#: dotted OIDs with a hex value.
_SHORT_NAMES: Final = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}

#: DER string tags (X.680 8.4) and how their content decodes.
_STRING_ENCODINGS: Final = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString, as OpenSSL reads it
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}

_SPECIAL: Final = frozenset('"+,;<>\\')


def certificate_subject(der: bytes) -> str | None:
    """A DER certificate's subject as an RFC 4514 string; None if it does not parse."""
    try:
        return _subject_name(der)
    except (IndexError, ValueError):
        return None


def _subject_name(der: bytes) -> str:
    _, start, end = _element(der, 0)  # Certificate
    _, start, end = _element(der, start)  # TBSCertificate (RFC 5280 4.1)
    fields = _children(der, start, end)
    if fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    _, _, subject_start, subject_end = fields[4]  # serial, signature, issuer, validity, subject
    rdns: list[str] = []
    for _, _, set_start, set_end in _children(der, subject_start, subject_end):
        attributes = []
        for _, _, pair_start, pair_end in _children(der, set_start, set_end):
            (_, _, oid_start, oid_end), value = _children(der, pair_start, pair_end)
            attributes.append(_attribute(der, _oid(der[oid_start:oid_end]), value))
        rdns.append("+".join(attributes))
    # RFC 4514 2.1: the last RDN of the sequence is written first.
    return ",".join(reversed(rdns))


def _attribute(der: bytes, oid: str, value: tuple[int, int, int, int]) -> str:
    tag, offset, start, end = value
    name = _SHORT_NAMES.get(oid)
    encoding = _STRING_ENCODINGS.get(tag)
    if name is None or encoding is None:
        # RFC 4514 2.4: a dotted OID (or a value that is not a string) is
        # written as "#" and the hex of its whole BER encoding.
        return f"{name or oid}=#{der[offset:end].hex()}"
    return f"{name}={_escape(der[start:end].decode(encoding))}"


def _escape(value: str) -> str:
    """RFC 4514 2.4 escaping of an attribute value."""
    out = []
    last = len(value) - 1
    for index, char in enumerate(value):
        if char in _SPECIAL or (index == 0 and char in " #") or (index == last and char == " "):
            out.append("\\" + char)
        elif char == "\x00":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _element(der: bytes, offset: int) -> tuple[int, int, int]:
    """The tag, content start and content end of the DER element at ``offset`` (X.690 8.1)."""
    tag = der[offset]
    length = der[offset + 1]
    start = offset + 2
    if length & 0x80:
        count = length & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise ValueError("truncated DER element")
    return tag, start, end


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements inside a constructed one: (tag, offset, content start, content end)."""
    children = []
    offset = start
    while offset < end:
        tag, content_start, content_end = _element(der, offset)
        children.append((tag, offset, content_start, content_end))
        offset = content_end
    return children


def _oid(content: bytes) -> str:
    """An OBJECT IDENTIFIER's dotted form (X.690 8.19)."""
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))
