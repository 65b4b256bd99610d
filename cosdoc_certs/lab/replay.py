"""A lab server built from a captured facts file: a customer's server, replayed on this machine.

:func:`replay_installation` reads what ``status --save-facts`` captured (see
:mod:`cosdoc_certs.captured`) and builds a :class:`ReplayedServer`: the same computer name,
services (name, display name, account, PathName, state, start mode), IIS sites, applications,
pools (identity, state) and bindings (ip:port:host, sslFlags), key storage (CNG/CAPI and the
provider), key-file readers (by SID: every account the server resolved keeps its SID, so an
anonymized file replays too; a Norwegian server's names make a Norwegian lab), and config
files with their exact byte layout.

**Thumbprints.** The lab cannot hold the customer's private keys, so each certificate captured
*with* a private key gets a stand-in: a certificate with the same subject, validity, key usage,
extended key usage and DNS names, issued by the lab's test CA with a new lab key — and so with
a new thumbprint. :attr:`ReplayedServer.stand_ins` maps each captured thumbprint to its
stand-in's, and every place the captured server named the old one names the stand-in instead:
the config files (same case, so the byte length and every other byte stay), the bindings. The
role of each thumbprint therefore stays what it was. Certificates without a private key (CA
certificates, orphans) are put into the store as captured, thumbprint unchanged. The issuer of a
stand-in is the lab's test CA, and its key file gets a new name; the renewed certificates to
rotate to are the lab's (:class:`~cosdoc_certs.lab.scenarios.LabCertificates`).

What the file does not hold is not replayed: the values scrubbed out of the config files stay
``x``-filled (a file the session could not read is an empty file that refuses it again),
http.sys entries carry the default settings (entries of other programs are not replayed),
and the services' certificate use comes from the consumer catalog. How a service's .NET looks
thumbprints up is inferred: one that was running with a U+200E in front of a thumbprint reads
them like modern .NET (which skips it), every other one like .NET Framework.
"""

from __future__ import annotations

import fnmatch
import ntpath
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cryptography import x509

from cosdoc_certs.captured import CapturedFacts
from cosdoc_certs.certs.providers import key_provider
from cosdoc_certs.consumers import COSDOC_CATALOG, Consumer, IisConsumer, ServiceConsumer
from cosdoc_certs.lab.model import AppPool, Binding, IisApplication, IisSite, WindowsService
from cosdoc_certs.lab.scenarios import LabCertificates, LabServer, make_lab_certificates
from cosdoc_certs.lab.server.accounts import Language
from cosdoc_certs.lab.server.files import IO_EXCEPTION
from cosdoc_certs.lab.server.uses import (
    NO_CERTIFICATES,
    CertificateSetting,
    CertificateUse,
    ThumbprintLookup,
)
from cosdoc_certs.windows.gather import CertificateFact, GatherDocument, IisFacts, ServiceFact

__all__ = ["ReplayedServer", "replay_installation"]

_BINDING = re.compile(r"^(.*):(\d+):(.*)$")


class ReplayedServer(LabServer):
    """A lab server replayed from captured facts; ``stand_ins`` maps old → stand-in thumbprint."""

    stand_ins: dict[str, str]


def replay_installation(
    captured: CapturedFacts,
    root: Path | None = None,
    *,
    certificates: LabCertificates | None = None,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
) -> ReplayedServer:
    """The lab server the captured facts describe (see the module docstring)."""
    document = captured.document
    certificates = certificates or make_lab_certificates()
    server = ReplayedServer(root, certificates, language=_language(document))
    server.stand_ins = {}
    server.hostname = document.computer_name
    server.accounts.computer_name = document.computer_name
    _add_accounts(server, document)
    server.environment["COMPUTERNAME"] = document.computer_name
    server.store.add_authority(certificates.ca.root.certificate)
    server.store.add_authority(certificates.ca.intermediate.certificate)
    server.store.dotnet_opens_capi_as_cng = any(
        _capi_opened_as_cng(f) for f in document.certificates
    )
    for fact in document.certificates:
        _add_certificate(server, certificates, fact)
    _write_config_files(server, document)
    _add_services(server, document, consumers)
    server.iis_installed = document.iis_presence.installed
    server.web_administration = document.iis_presence.module
    if document.iis is not None:
        _add_iis(server, document.iis, consumers)
    return server


def _language(document: GatherDocument) -> Language:
    """Norwegian when the server named a well-known account in Norwegian, else English."""
    names = [service.identity.name or "" for service in document.services]
    names += [reader.name or "" for fact in document.certificates for reader in fact.readers]
    return "nb" if any(name.upper().startswith("NT-MYNDIGHET\\") for name in names) else "en"


def _add_accounts(server: ReplayedServer, document: GatherDocument) -> None:
    """Every account the server resolved keeps its SID and the server's name for it: services,
    pools and key readers (the name first, as the server showed it)."""
    identities = [(s.account, s.identity) for s in document.services]
    if document.iis is not None:
        identities += [(p.user_name, p.identity) for p in document.iis.app_pools]
    for fact in document.certificates:
        identities += [(reader.name or "", reader) for reader in fact.readers]
    for configured, identity in identities:
        if not identity.sid:
            continue
        for name in (identity.name, configured):
            if name:
                server.accounts.add_known(name, identity.sid)


def _capi_opened_as_cng(fact: CertificateFact) -> bool:
    """True when .NET handed gather a CNG handle for a CAPI provider's key (.NET 4.8 does)."""
    return (
        fact.key_storage == "CNG"
        and fact.key_provider is not None
        and not key_provider(fact.key_provider).is_cng
    )


def _add_certificate(
    server: ReplayedServer, certificates: LabCertificates, fact: CertificateFact
) -> None:
    captured = x509.load_der_x509_certificate(fact.der)
    if not fact.has_private_key:
        server.store.add(captured)
        return
    key_usage = _extension(captured, x509.KeyUsage)
    usages = _extension(captured, x509.ExtendedKeyUsage)
    stand_in = certificates.ca.issue(
        captured.subject,
        key_usage=key_usage
        if isinstance(key_usage, x509.KeyUsage)
        else x509.KeyUsage(True, False, True, False, False, False, False, False, False),
        extended_key_usage=list(usages) if isinstance(usages, x509.ExtendedKeyUsage) else [],
        dns_names=_dns_names(captured),
        not_before=captured.not_valid_before_utc,
        not_after=captured.not_valid_after_utc,
    )
    entry = server.store.add(
        stand_in.certificate,
        stand_in.private_key,
        key_storage="CAPI" if fact.key_storage == "CAPI" else "CNG",
        readers=[reader.sid for reader in fact.readers if reader.sid],
        provider=fact.key_provider,
    )
    server.stand_ins[fact.thumbprint.upper()] = entry.thumbprint


def _extension(certificate: x509.Certificate, kind: type[x509.ExtensionType]) -> object | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _dns_names(certificate: x509.Certificate) -> list[str]:
    names = _extension(certificate, x509.SubjectAlternativeName)
    if not isinstance(names, x509.SubjectAlternativeName):
        return []
    return list(names.get_values_for_type(x509.DNSName))


def _swap_thumbprints(data: bytes, stand_ins: dict[str, str]) -> bytes:
    """``data`` with every captured thumbprint replaced by its stand-in, in the same case."""
    for old, new in stand_ins.items():

        def stand_in(match: re.Match[bytes], new: str = new) -> bytes:
            return (new.lower() if match.group().islower() else new).encode()

        data = re.sub(re.escape(old).encode(), stand_in, data, flags=re.IGNORECASE)
    return data


def _write_config_files(server: ReplayedServer, document: GatherDocument) -> None:
    """The files as captured; one the session could not read is there (empty) and refuses the
    session again: locked when another process held it, denied otherwise."""
    for fact in document.config_files:
        if fact.exists and fact.content is not None:
            server.files.write(fact.path, _swap_thumbprints(fact.content, server.stand_ins))
        elif fact.exists and fact.error is not None:
            server.files.write(fact.path, b"")
            unreadable = server.files.locked if IO_EXCEPTION in fact.error else server.files.denied
            unreadable.add(fact.path.casefold())


def _use(consumer: ServiceConsumer | IisConsumer) -> CertificateUse:
    settings = tuple(
        CertificateSetting(key.path.removeprefix("$."), key.role.value) for key in consumer.keys
    )
    return CertificateUse(settings, key_api=consumer.key_api)


def _add_services(
    server: ReplayedServer, document: GatherDocument, consumers: Sequence[Consumer]
) -> None:
    for fact in document.services:
        consumer = next(
            (
                c
                for c in consumers
                if isinstance(c, ServiceConsumer)
                and fnmatch.fnmatchcase(fact.name.casefold(), c.service_pattern.casefold())
            ),
            None,
        )
        uses = _use(consumer) if consumer else NO_CERTIFICATES
        if fact.state == "Running" and consumer and _has_leading_mark(document, fact, consumer):
            uses = replace(uses, lookup=ThumbprintLookup.NETCORE)
        service = WindowsService(
            fact.name,
            fact.display_name,
            fact.account,
            fact.path_name,
            state="Running" if fact.state == "Running" else "Stopped",
            start_mode=fact.start_mode,
            uses=uses,
        )
        if fact.app_directory:  # nssm's Parameters key
            service.parameters["AppDirectory"] = fact.app_directory
        if fact.install_folder:
            service.app_folder = fact.install_folder
        if service.state == "Running":
            service.process_id = 4200 + 4 * len(server.services)
        server.add_service(service)


def _has_leading_mark(
    document: GatherDocument, service: ServiceFact, consumer: ServiceConsumer
) -> bool:
    """True when the service's config has a thumbprint starting with U+200E: since it ran, its
    .NET reads thumbprints like modern .NET (which skips one leading U+200E)."""
    if service.install_folder is None:
        return False
    path = ntpath.normcase(ntpath.join(service.install_folder, consumer.config_file))
    for fact in document.config_files:
        if ntpath.normcase(fact.path) == path and fact.content is not None:
            return '"\u200e'.encode() in fact.content
    return False


def _add_iis(server: ReplayedServer, iis: IisFacts, consumers: Sequence[Consumer]) -> None:
    for pool in iis.app_pools:
        server.add_app_pool(
            AppPool(
                pool.name,
                pool.identity_type,  # type: ignore[arg-type]  # as gather read it
                pool.user_name,
                state="Started" if pool.state == "Started" else "Stopped",
            )
        )
    for site in iis.sites:
        bindings = [
            _binding(fact.binding_information, fact.ssl_flags, fact.certificate_hash, server)
            for fact in iis.bindings
            if fact.site == site.name
        ]
        server.add_site(IisSite(site.name, site.id, site.physical_path, site.app_pool, bindings))
    for application in iis.applications:
        if application.path == "/":
            continue
        server.add_application(
            IisApplication(
                application.site,
                application.path,
                application.physical_path,
                application.app_pool,
                _application_use(application.site, application.name, consumers),
            )
        )


def _application_use(site: str, name: str, consumers: Sequence[Consumer]) -> CertificateUse:
    for consumer in consumers:
        if (
            isinstance(consumer, IisConsumer)
            and consumer.application.casefold() == name.casefold()
            and consumer.environment.casefold() in site.casefold()
        ):
            return _use(consumer)
    return NO_CERTIFICATES


def _binding(
    information: str, ssl_flags: int, certificate_hash: str, server: ReplayedServer
) -> Binding:
    match = _BINDING.match(information)
    if match is None:
        raise ValueError(f"binding information {information!r} is not ip:port:host")
    thumbprint = certificate_hash.upper() or None
    if thumbprint is not None:
        thumbprint = server.stand_ins.get(thumbprint, thumbprint)
    return Binding(  # gather reads the HTTPS bindings only
        "https", match.group(1), int(match.group(2)), match.group(3), ssl_flags, thumbprint
    )
