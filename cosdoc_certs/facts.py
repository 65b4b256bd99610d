"""Windows facts and the doctor: what each consumer uses today, and what is wrong with it.

Pure: :class:`WindowsFacts` wraps the document ``gather`` returned (see
:mod:`cosdoc_certs.windows.gather`) with the certificates parsed; :func:`diagnose` resolves,
for every consumer of the catalog, the services or IIS applications it is, the thumbprints
their config files name (read with :mod:`cosdoc_certs.appsettings`), the certificates those
are in ``LocalMachine\\My``, and the findings a consultant acts on. Finding codes are stable
(see ``docs/status.md``):

- from the config values: ``thumbprint-invisible-char``, ``thumbprint-separators``,
  ``thumbprint-lowercase``, ``thumbprint-malformed`` (appsettings), ``setting-missing``,
  ``config-missing``, ``config-invalid``;
- about what a value names: ``thumbprint-not-in-store``, ``expired``, ``not-yet-valid``,
  ``expires-soon``, ``wrong-role``, ``no-private-key``, ``key-not-readable``,
  ``key-file-unknown``, ``cng-key`` (info), ``superseded``, ``key-provider-unusable`` (the
  key is in a provider the consumer cannot use: CNG for a CAPI-only consumer, a legacy
  PROV_RSA_FULL provider for SHA-256 signing);
- about IIS bindings: ``binding-no-certificate``, ``binding-mismatch``, ``sni-shadowed``;
- about the consumer itself: ``consumer-not-found``, ``not-running``, ``account-unresolved``
  (its account has no SID on the server), ``config-unreadable`` (the file is there but the
  remoting session cannot read it: locked, access denied, a UNC share), ``iis-module-missing``,
  ``http-sys-unread`` (netsh failed: IIS's configured hashes stand in for what is served).

Accounts are compared by SID, never by name: ``gather`` resolves every service account, pool
identity and key-file reader to a SID on the server, and names are only what the server
calls them (``NT-MYNDIGHET\\NETTVERKSTJENESTE`` on a Norwegian server).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import html
import logging
import ntpath
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from cryptography import x509

from cosdoc_certs.appsettings import AppSettings, thumbprint_findings
from cosdoc_certs.certs import CertificateInfo, Role, roles_of
from cosdoc_certs.certs.classify import validity_findings
from cosdoc_certs.certs.model import ROLE_DESCRIPTIONS
from cosdoc_certs.certs.providers import (
    ENHANCED_RSA_AES,
    SOFTWARE_KSP,
    KeyApi,
    key_provider,
    unusable_because,
)
from cosdoc_certs.consumers import (
    Consumer,
    HttpsBindingsConsumer,
    IisConsumer,
    ManualStep,
    ServiceConsumer,
    SvarutConsumer,
    ThumbprintKey,
)
from cosdoc_certs.errors import ConfigFileError, ThumbprintError
from cosdoc_certs.findings import DEFAULT_WARN_DAYS, Finding, Severity, worst
from cosdoc_certs.thumbprints import normalize_thumbprint
from cosdoc_certs.windows.gather import (
    ApplicationFact,
    BindingFact,
    CertificateFact,
    ConfigFileFact,
    GatherDocument,
    IdentityFact,
    IisFacts,
    ServiceFact,
)

log = logging.getLogger(__name__)

# IIS's "*" is http.sys's 0.0.0.0; "[::]" (every IPv6 address) is an entry of its own.
_WILDCARD_IPS = frozenset({"*", "", "0.0.0.0"})  # noqa: S104 -- binding notation
# Every address of a family: http.sys answers these after SNI entries, so they shadow nothing.
_ANY_ADDRESS = _WILDCARD_IPS | {"::", "[::]"}
SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
IIS_IUSRS_SID = "S-1-5-32-568"
DEFAULT_KEY_READER_SIDS = (SYSTEM_SID, ADMINISTRATORS_SID)
"""Who may read a key Windows has just imported: SYSTEM and Administrators."""
# Everyone, Authenticated Users, BUILTIN\Users: every account a service or pool runs as.
_EVERYBODY_SIDS = frozenset({"S-1-1-0", "S-1-5-11", "S-1-5-32-545"})
_APP_POOL_SID_PREFIX = "S-1-5-82-"  # IIS AppPool\<pool>: members of IIS_IUSRS
_FILE_KEY_PROVIDERS = frozenset(
    {
        "Microsoft Software Key Storage Provider",
        "Microsoft Enhanced RSA and AES Cryptographic Provider",
        "Microsoft Enhanced Cryptographic Provider v1.0",
        "Microsoft Base Cryptographic Provider v1.0",
        "Microsoft Strong Cryptographic Provider",
        "Microsoft RSA SChannel Cryptographic Provider",
        "Microsoft Enhanced DSS and Diffie-Hellman Cryptographic Provider",
        "Microsoft DH SChannel Cryptographic Provider",
        "Microsoft Base DSS and Diffie-Hellman Cryptographic Provider",
    }
)
"""The software providers that keep a key in a file under ProgramData\\Microsoft\\Crypto."""


@dataclasses.dataclass(frozen=True)
class StoreCertificate:
    """A certificate of ``LocalMachine\\My``: the gathered fact and the parsed certificate."""

    fact: CertificateFact
    info: CertificateInfo

    @property
    def thumbprint(self) -> str:
        """Upper-case hex SHA-1 of the DER."""
        return self.info.thumbprint

    @property
    def role(self) -> Role | None:
        """The one role its key usage says it is for (None when none or several)."""
        return self.info.role

    @property
    def name(self) -> str:
        """Issued to (or the subject): what a person recognises."""
        return self.info.issued_to or self.info.subject

    def days_left(self, now: dt.datetime) -> int:
        """Whole days until it expires (negative once expired)."""
        return self.info.days_left(now)


@dataclasses.dataclass(frozen=True)
class WindowsFacts:
    """Everything ``gather`` saw on one server, with the certificates parsed."""

    document: GatherDocument
    certificates: tuple[StoreCertificate, ...]

    @classmethod
    def from_json(cls, text: str) -> WindowsFacts:
        """Parse ``gather``'s JSON (validated against the contract)."""
        return cls.from_document(GatherDocument.from_json(text))

    @classmethod
    def from_document(cls, document: GatherDocument) -> WindowsFacts:
        """Wrap a parsed ``gather`` document."""
        return cls(document, tuple(_store_certificate(fact) for fact in document.certificates))

    @property
    def computer_name(self) -> str:
        """The server's name."""
        return self.document.computer_name

    @property
    def services(self) -> tuple[ServiceFact, ...]:
        """The services that matched the catalog's patterns."""
        return self.document.services

    @property
    def iis(self) -> IisFacts | None:
        """IIS sites, applications, pools and bindings (None without WebAdministration)."""
        return self.document.iis

    def certificate(self, thumbprint: str) -> StoreCertificate | None:
        """The store certificate with ``thumbprint`` (normalised), or None."""
        wanted = thumbprint.upper()
        return next((c for c in self.certificates if c.thumbprint == wanted), None)

    def config_file(self, path: str) -> ConfigFileFact | None:
        """The gathered config file at Windows ``path`` (case-insensitive), or None."""
        wanted = ntpath.normcase(path)
        return next(
            (f for f in self.document.config_files if ntpath.normcase(f.path) == wanted), None
        )

    def __repr__(self) -> str:
        iis = self.iis
        sites = len(iis.sites) if iis else 0
        return (
            f"<WindowsFacts {self.computer_name} at {self.document.gathered_at:%Y-%m-%d %H:%M}Z:"
            f" {len(self.services)} services, {sites} IIS sites,"
            f" {len(self.certificates)} certificates,"
            f" {len(self.document.config_files)} config files>"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c.thumbprint)}</td><td>{html.escape(c.name)}</td>"
            f"<td>{c.role or '?'}</td><td>{c.info.not_after:%Y-%m-%d}</td>"
            f"<td>{c.fact.key_storage or '-'}</td></tr>"
            for c in self.certificates
        )
        return (
            f"<p>{html.escape(repr(self))}</p><table><tr><th>Thumbprint</th><th>Issued to</th>"
            f"<th>Role</th><th>Expires</th><th>Key</th></tr>{rows}</table>"
        )


@dataclasses.dataclass(frozen=True)
class CertificateUse:
    """One place that names a certificate: a config key of an instance, or an HTTPS binding.

    ``configured`` is the value as written (it may carry invisible characters);
    ``thumbprint`` its normalised form when it has one; ``account`` the Windows account
    that must read the private key (None for bindings: http.sys runs as SYSTEM);
    ``app_pool`` the IIS application pool that runs an IIS application's config.
    """

    instance: str
    setting: str
    role: Role
    configured: str | None
    thumbprint: str | None
    certificate: StoreCertificate | None
    account: str | None = None
    file: str | None = None
    app_pool: str | None = None
    account_sid: str | None = None

    @property
    def subject(self) -> str:
        """What findings about this use name: the instance, and the setting of a config."""
        return f"{self.instance} {self.setting}" if self.file else self.instance

    def to_dict(self, now: dt.datetime) -> dict[str, Any]:
        """A JSON-ready form."""
        certificate = self.certificate
        return {
            "instance": self.instance,
            "setting": self.setting,
            "role": self.role.value,
            "configured": self.configured,
            "thumbprint": self.thumbprint,
            "in_store": certificate is not None,
            "issued_to": certificate.name if certificate else None,
            "certificate_role": certificate.role.value
            if certificate and certificate.role
            else None,
            "not_after": certificate.info.not_after.isoformat() if certificate else None,
            "days_left": certificate.days_left(now) if certificate else None,
            "key_storage": certificate.fact.key_storage if certificate else None,
            "key_provider": certificate.fact.key_provider if certificate else None,
            "account": self.account,
            "account_sid": self.account_sid,
            "file": self.file,
        }


@dataclasses.dataclass(frozen=True)
class ConsumerStatus:
    """What one consumer uses today and what is wrong with it."""

    consumer: Consumer
    instances: tuple[str, ...]
    uses: tuple[CertificateUse, ...]
    findings: tuple[Finding, ...]
    notes: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The consumer's name."""
        return self.consumer.name

    @property
    def worst(self) -> Severity | None:
        """The worst severity among the findings, None if there are none."""
        return worst(self.findings)

    def to_dict(self, now: dt.datetime) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "name": self.name,
            "kind": self.consumer.kind,
            "instances": list(self.instances),
            "uses": [use.to_dict(now) for use in self.uses],
            "findings": [finding.to_dict() for finding in self.findings],
            "notes": list(self.notes),
            "worst": str(self.worst) if self.worst is not None else None,
        }


def diagnose(
    facts: WindowsFacts,
    consumers: Sequence[Consumer],
    *,
    now: dt.datetime,
    warn_days: int = DEFAULT_WARN_DAYS,
) -> tuple[ConsumerStatus, ...]:
    """The doctor: for each consumer, the certificates it uses and the findings about them.

    A newer certificate in the store is a warning where another consumer already uses it
    (a rotation that missed a place), a note where none does (imported for a rotation not
    done yet, or left in the store by a rollback): the second look knows which are used.
    """
    statuses = tuple(_Doctor(facts, now, warn_days).examine(consumer) for consumer in consumers)
    if not any(finding.code == "superseded" for s in statuses for finding in s.findings):
        return statuses
    in_use = frozenset(
        use.thumbprint
        for status in statuses
        if not isinstance(status.consumer, (SvarutConsumer, ManualStep))  # candidates, not uses
        for use in status.uses
        if use.thumbprint
    )
    doctor = _Doctor(facts, now, warn_days, in_use=in_use)
    return tuple(doctor.examine(consumer) for consumer in consumers)


def can_read(account_sid: str, reader_sids: Iterable[str | None]) -> bool:
    """True if the account with ``account_sid`` is among ``reader_sids`` itself or through a
    well-known group (Everyone, Authenticated Users, Users; IIS_IUSRS for app-pool identities;
    Administrators for SYSTEM)."""
    wanted = account_sid.upper()
    for reader in reader_sids:
        granted = (reader or "").upper()
        if granted == wanted or granted in _EVERYBODY_SIDS:
            return True
        if granted == IIS_IUSRS_SID and wanted.startswith(_APP_POOL_SID_PREFIX):
            return True
        if granted == ADMINISTRATORS_SID and wanted == SYSTEM_SID:
            return True
    return False


def key_without_file(fact: CertificateFact) -> bool:
    """True for a private key a TPM, smart card or HSM provider keeps: no file to grant on."""
    return (
        fact.has_private_key
        and fact.key_file is None
        and fact.key_provider is not None
        and fact.key_provider not in _FILE_KEY_PROVIDERS
    )


def config_read_problem(file: ConfigFileFact) -> str:
    """Why the remoting session could not read an existing config file, in words to act on."""
    error = file.error or ""
    if file.path.startswith(("\\\\", "//")):
        return (
            f"cannot read {file.path}: a UNC path is a second hop the remoting session cannot "
            "reach without CredSSP or Kerberos delegation; connect with --auth credssp or "
            "kerberos delegation, or name a local path in a deviations file"
        )
    if error.startswith("System.UnauthorizedAccessException"):
        return (
            f"cannot read {file.path}: access denied to the connecting account; give "
            "Administrators read on it (the service keeps its own access)"
        )
    if error.startswith("System.IO.IOException"):
        return (
            f"cannot read {file.path}: locked by another process (backup or antivirus?); "
            "try again when it is free"
        )
    return f"cannot read {file.path}: {error}"


def _store_certificate(fact: CertificateFact) -> StoreCertificate:
    certificate = x509.load_der_x509_certificate(fact.der)
    roles = roles_of(certificate)
    role = next(iter(roles)) if len(roles) == 1 else None
    info = CertificateInfo(certificate, source="LocalMachine\\My", role=role)
    return StoreCertificate(fact, info)


@dataclasses.dataclass(frozen=True)
class _Instance:
    """One service or IIS application of a consumer: its name, config file and account.

    ``account`` is the server's name for the account, ``identity`` what gather resolved.
    """

    name: str
    config_path: str | None
    account: str | None
    running: bool
    state: str
    app_pool: str | None = None
    identity: IdentityFact | None = None


class _Doctor:
    """Examines consumers against one server's facts (one per :func:`diagnose` call)."""

    def __init__(
        self,
        facts: WindowsFacts,
        now: dt.datetime,
        warn_days: int,
        *,
        in_use: frozenset[str] | None = None,
    ) -> None:
        self.facts = facts
        self.now = now
        self.warn_days = warn_days
        self.in_use = in_use  # every thumbprint a consumer uses, once known

    def examine(self, consumer: Consumer) -> ConsumerStatus:
        if isinstance(consumer, (ServiceConsumer, IisConsumer)):
            return self._config_consumer(consumer)
        if isinstance(consumer, HttpsBindingsConsumer):
            return self._bindings(consumer)
        if isinstance(consumer, SvarutConsumer):
            where = consumer.host or "the SvarUT Linux host"
            note = (
                f"SvarUT's nginx ({where}, layout {consumer.layout}) is on Linux and is not part "
                "of the Windows status; it should serve the SSL certificate shown (the newest "
                "valid one in LocalMachine\\My)."
            )
            return ConsumerStatus(consumer, (), self._candidates(consumer), (), (note,))
        return ConsumerStatus(
            consumer, (), self._candidates(consumer), (), (consumer.instructions,)
        )

    # -- services and IIS applications --------------------------------------------------------

    def _config_consumer(self, consumer: ServiceConsumer | IisConsumer) -> ConsumerStatus:
        instances, findings = self._instances(consumer)
        uses: list[CertificateUse] = []
        for instance in instances:
            if not instance.running:
                findings.append(
                    Finding(
                        "not-running",
                        Severity.WARNING,
                        f"is {instance.state}; check the event log after fixing the findings",
                        instance.name,
                    )
                )
            findings += _identity_findings(instance)
            settings = self._settings(instance, findings)
            if settings is None:
                continue
            for key in consumer.keys:
                use = self._config_use(instance, settings, key, findings)
                if use is not None:
                    uses.append(use)
                    findings += self._certificate_findings(use)
                    findings += _provider_findings(use, consumer.key_api)
        return ConsumerStatus(
            consumer, tuple(i.name for i in instances), tuple(uses), _unique(findings)
        )

    def _instances(
        self, consumer: ServiceConsumer | IisConsumer
    ) -> tuple[list[_Instance], list[Finding]]:
        if isinstance(consumer, ServiceConsumer):
            instances = [
                self._service_instance(service, consumer.config_file)
                for service in self.facts.services
                if _like(service.name, consumer.service_pattern)
            ]
            missing = f"no Windows service matches {consumer.service_pattern!r}"
        else:
            instances = [
                self._application_instance(application, consumer.config_file)
                for application in self._applications(consumer)
            ]
            place = f" in a site named «…{consumer.environment}…»" if consumer.environment else ""
            missing = f"no IIS application {consumer.application!r}{place}"
            if self.facts.iis is None:
                iis_problem = _iis_module_missing(self.facts, consumer.name)
                if iis_problem is not None:
                    return [], [iis_problem]
                missing = "IIS is not installed on this server"
        if instances:
            return instances, []
        finding = Finding(
            "consumer-not-found",
            Severity.WARNING,
            f"{missing}; if this customer names it differently or does not use it, say so in a "
            "deviations file (--consumers)",
            consumer.name,
        )
        return [], [finding]

    def _service_instance(self, service: ServiceFact, config_file: str) -> _Instance:
        folder = service.install_folder
        return _Instance(
            name=service.name,
            config_path=ntpath.join(folder, config_file) if folder else None,
            account=service.identity.shown(service.account) or None,
            running=service.state == "Running" or service.start_mode != "Auto",
            state=service.state,
            identity=service.identity,
        )

    def _applications(self, consumer: IisConsumer) -> list[ApplicationFact]:
        iis = self.facts.iis
        if iis is None:
            return []
        wanted, environment = consumer.application.casefold(), consumer.environment.casefold()
        return [
            application
            for application in iis.applications
            if environment in application.site.casefold()
            and (
                application.name.casefold() == wanted
                or (application.path == "/" and wanted in application.site.casefold())
            )
        ]

    def _application_instance(self, application: ApplicationFact, config_file: str) -> _Instance:
        iis = self.facts.iis
        pools = {pool.name.casefold(): pool for pool in (iis.app_pools if iis else ())}
        pool = pools.get(application.app_pool.casefold())
        path = application.path if application.path != "/" else ""
        return _Instance(
            name=f"{application.site}{path}",
            config_path=ntpath.join(application.physical_path, config_file),
            account=pool.account if pool else None,
            running=pool is not None and pool.state == "Started",
            state=f"app pool {application.app_pool} {pool.state if pool else 'missing'}",
            app_pool=application.app_pool,
            identity=pool.identity if pool else None,
        )

    def _settings(self, instance: _Instance, findings: list[Finding]) -> AppSettings | None:
        path = instance.config_path
        gathered = self.facts.config_file(path) if path else None
        if gathered is not None and gathered.error is not None:
            findings.append(
                Finding(
                    "config-unreadable",
                    Severity.ERROR,
                    config_read_problem(gathered),
                    instance.name,
                )
            )
            return None
        if path is None or gathered is None or gathered.content is None:
            where = path or "(the service has no executable path)"
            findings.append(
                Finding(
                    "config-missing",
                    Severity.ERROR,
                    f"config file {where} does not exist; check the install folder (deviations)",
                    instance.name,
                )
            )
            return None
        try:
            return AppSettings.parse(gathered.content, source=path)
        except ConfigFileError as error:
            findings.append(Finding("config-invalid", Severity.ERROR, str(error), instance.name))
            return None

    def _config_use(
        self,
        instance: _Instance,
        settings: AppSettings,
        key: ThumbprintKey,
        findings: list[Finding],
    ) -> CertificateUse | None:
        subject = f"{instance.name} {key.path}"
        try:
            value = settings.find(key.path)
        except ConfigFileError as error:
            findings.append(Finding("setting-missing", Severity.ERROR, str(error), subject))
            return None
        if value is None:
            findings.append(
                Finding(
                    "setting-missing",
                    Severity.ERROR,
                    f"{settings.source} has no {key.path}; "
                    f"it must name {ROLE_DESCRIPTIONS[key.role]}",
                    subject,
                )
            )
            return None
        findings += thumbprint_findings(value, subject)
        thumbprint = _normalised(value.value)
        return CertificateUse(
            instance=instance.name,
            setting=key.path,
            role=key.role,
            configured=value.value,
            thumbprint=thumbprint,
            certificate=self.facts.certificate(thumbprint) if thumbprint else None,
            account=instance.account,
            file=settings.source,
            app_pool=instance.app_pool,
            account_sid=instance.identity.sid if instance.identity else None,
        )

    # -- what a use names ---------------------------------------------------------------------

    def _certificate_findings(self, use: CertificateUse) -> list[Finding]:
        subject = use.subject
        certificate = use.certificate
        if use.thumbprint is None:
            return []
        if certificate is None:
            return [
                Finding(
                    "thumbprint-not-in-store",
                    Severity.ERROR,
                    f"{use.thumbprint} is not in LocalMachine\\My; import the certificate or "
                    "correct the thumbprint",
                    subject,
                )
            ]
        findings = [
            Finding(f.code, f.severity, f"{_describe(certificate)} {f.message}", subject)
            for f in validity_findings(
                certificate.info.certificate, certificate.name, self.now, self.warn_days
            )
        ]
        findings += self._role_findings(use, certificate, subject)
        findings += self._key_findings(use, certificate, subject)
        findings += self._superseded(use, certificate, subject)
        return findings

    def _role_findings(
        self, use: CertificateUse, certificate: StoreCertificate, subject: str
    ) -> list[Finding]:
        roles = roles_of(certificate.info.certificate)
        if use.role in roles:
            return []
        has = " and ".join(sorted(r.value for r in roles)) or "no CosDoc role"
        return [
            Finding(
                "wrong-role",
                Severity.ERROR,
                f"{_describe(certificate)} is for {has}, but this setting wants "
                f"{ROLE_DESCRIPTIONS[use.role]}",
                subject,
            )
        ]

    def _key_findings(
        self, use: CertificateUse, certificate: StoreCertificate, subject: str
    ) -> list[Finding]:
        fact = certificate.fact
        if not fact.has_private_key:
            return [
                Finding(
                    "no-private-key",
                    Severity.ERROR,
                    f"{_describe(certificate)} has no private key in the store; import the PFX "
                    "(with its key) into LocalMachine\\My",
                    subject,
                )
            ]
        findings: list[Finding] = []
        if fact.key_storage == "CNG":
            findings.append(
                Finding(
                    "cng-key",
                    Severity.INFO,
                    f"{_describe(certificate)} has a CNG key (ProgramData\\Microsoft\\Crypto\\Keys)"
                    "; ACL scripts that only look in RSA\\MachineKeys miss it",
                    certificate.thumbprint,
                )
            )
        if use.account is None or use.account_sid is None:
            return findings
        if fact.key_file is None:
            reason = fact.key_error or "no key file"
            if key_without_file(fact):
                reason = (
                    f"the key is kept by {fact.key_provider} (TPM, smart card or HSM), which has "
                    "no key file whose ACL could be read or granted"
                )
            findings.append(
                Finding(
                    "key-file-unknown",
                    Severity.WARNING,
                    f"cannot check who may read the key of {_describe(certificate)}: {reason}",
                    subject,
                )
            )
        elif not can_read(use.account_sid, (reader.sid for reader in fact.readers)):
            findings.append(
                Finding(
                    "key-not-readable",
                    Severity.ERROR,
                    f"{use.account} cannot read the private key of {_describe(certificate)} "
                    f"({fact.key_file}); grant it read ('Keyset does not exist' otherwise)",
                    subject,
                )
            )
        return findings

    def _superseded(
        self, use: CertificateUse, certificate: StoreCertificate, subject: str
    ) -> list[Finding]:
        newer = [
            other
            for other in self.facts.certificates
            if other.info.certificate.subject == certificate.info.certificate.subject
            and use.role in roles_of(other.info.certificate)
            and other.info.not_before > certificate.info.not_before
            and other.info.not_before <= self.now < other.info.not_after
        ]
        if not newer:
            return []
        newest = max(newer, key=lambda other: other.info.not_before)
        if self.in_use is not None and newest.thumbprint not in self.in_use:
            return [
                Finding(
                    "newer-not-used",
                    Severity.INFO,
                    f"a newer certificate for the same subject is in the store "
                    f"({newest.thumbprint}, valid to {newest.info.not_after:%Y-%m-%d}) but no "
                    "consumer uses it yet: imported for a rotation not done, or left by a rollback",
                    subject,
                )
            ]
        return [
            Finding(
                "superseded",
                Severity.WARNING,
                f"names {_describe(certificate)}, but a newer certificate for the same subject is "
                f"in the store ({newest.thumbprint}, valid to {newest.info.not_after:%Y-%m-%d})",
                subject,
            )
        ]

    # -- IIS HTTPS bindings ---------------------------------------------------------------------

    def _bindings(self, consumer: HttpsBindingsConsumer) -> ConsumerStatus:
        iis = self.facts.iis
        if iis is None:
            finding = _iis_module_missing(self.facts, consumer.name) or Finding(
                "consumer-not-found",
                Severity.WARNING,
                "IIS is not installed on this server",
                consumer.name,
            )
            return ConsumerStatus(consumer, (), (), (finding,))
        wanted = {site.casefold() for site in consumer.sites}
        bindings = [b for b in iis.bindings if not wanted or b.site.casefold() in wanted]
        uses: list[CertificateUse] = []
        findings: list[Finding] = []
        for binding in bindings:
            use, binding_findings = self._binding_use(iis, binding)
            findings += binding_findings
            if use is not None:
                uses.append(use)
                findings += self._certificate_findings(use)
        findings += _shadowing(iis.bindings, bindings)
        findings += _http_sys_unread(self.facts, consumer.name)
        if not bindings:
            findings.append(
                Finding(
                    "consumer-not-found",
                    Severity.WARNING,
                    "no HTTPS binding found in IIS",
                    consumer.name,
                )
            )
        return ConsumerStatus(
            consumer, tuple(str(b) for b in bindings), tuple(uses), _unique(findings)
        )

    def _binding_use(
        self, iis: IisFacts, binding: BindingFact
    ) -> tuple[CertificateUse | None, list[Finding]]:
        if binding.central_store:
            return None, [
                Finding(
                    "binding-central-store",
                    Severity.WARNING,
                    "takes its certificate from the IIS Central Certificate Store (sslFlags 2): "
                    "cosdoc-certs does not rotate it; replace "
                    f"{binding.host or '<host>'}.pfx in the central store's share by hand",
                    str(binding),
                )
            ]
        served = served_thumbprint(iis, binding)
        if not served:
            return None, [
                Finding(
                    "binding-no-certificate",
                    Severity.ERROR,
                    "has no certificate: browsers cannot connect; select the SSL certificate "
                    "for it in IIS",
                    str(binding),
                )
            ]
        findings = []
        if binding.certificate_hash and binding.certificate_hash.upper() != served.upper():
            findings.append(
                Finding(
                    "binding-mismatch",
                    Severity.WARNING,
                    f"IIS says {binding.certificate_hash.upper()} but http.sys serves "
                    f"{served.upper()}; select the certificate again in IIS",
                    str(binding),
                )
            )
        thumbprint = _normalised(served)
        use = CertificateUse(
            instance=str(binding),
            setting="http.sys",
            role=Role.SSL,
            configured=served,
            thumbprint=thumbprint,
            certificate=self.facts.certificate(thumbprint) if thumbprint else None,
        )
        return use, findings

    # -- consumers outside this server ------------------------------------------------------

    def _candidates(self, consumer: SvarutConsumer | ManualStep) -> tuple[CertificateUse, ...]:
        """The newest valid store certificate of each role the consumer needs: what to select."""
        uses = []
        for role in consumer.roles:
            valid = [
                c
                for c in self.facts.certificates
                if c.role is role and c.info.not_before <= self.now < c.info.not_after
            ]
            if valid:
                newest = max(valid, key=lambda c: c.info.not_before)
                uses.append(
                    CertificateUse(
                        instance="LocalMachine\\My",
                        setting=f"to select (serial {newest.info.serial_number})",
                        role=role,
                        configured=None,
                        thumbprint=newest.thumbprint,
                        certificate=newest,
                    )
                )
        return tuple(uses)


def _provider_findings(use: CertificateUse, key_api: KeyApi) -> list[Finding]:
    """``key-provider-unusable`` when the key of the certificate ``use`` names is in a provider
    the consumer cannot use (its role signs with SHA-256; ``key_api`` from the catalog)."""
    certificate = use.certificate
    if certificate is None or not certificate.fact.has_private_key:
        return []
    name = certificate.fact.key_provider
    if not name:
        return []
    why = unusable_because(key_provider(name), key_api, signs=use.role is Role.SIGNING)
    if why is None:
        return []
    usable = SOFTWARE_KSP if key_api is KeyApi.CNG else ENHANCED_RSA_AES
    return [
        Finding(
            "key-provider-unusable",
            Severity.ERROR,
            f"the key of {_describe(certificate)} is in {name}: {why}; import its PFX again "
            f'with certutil -csp "{usable}" -importpfx (a rotation chooses a usable provider '
            "for the new key by itself)",
            use.subject,
        )
    ]


def _identity_findings(instance: _Instance) -> list[Finding]:
    identity = instance.identity
    if identity is None or identity.sid is not None:
        return []
    return [
        Finding(
            "account-unresolved",
            Severity.ERROR,
            f"its account {instance.account} has no SID on the server "
            f"({identity.error or 'not resolved'}); key access can be neither checked nor "
            "granted — correct the account (services.msc / IIS) and gather again",
            instance.name,
        )
    ]


def _http_sys_unread(facts: WindowsFacts, subject: str) -> list[Finding]:
    """A warning when netsh could not list http.sys's bindings (IIS's own hashes are used)."""
    netsh = facts.document.http_sys
    if netsh.exit_code == 0:
        return []
    first = netsh.output.strip().splitlines()[:1]
    return [
        Finding(
            "http-sys-unread",
            Severity.WARNING,
            f"netsh http show sslcert failed (exit code {netsh.exit_code}"
            f"{': ' + first[0] if first else ''}); what IIS is configured with is shown "
            "instead of what is served — run it by hand on the server",
            subject,
        )
    ]


def _iis_module_missing(facts: WindowsFacts, subject: str) -> Finding | None:
    """The error when IIS runs but gather could not read it (no WebAdministration)."""
    presence = facts.document.iis_presence
    if not presence.installed or (presence.module and presence.error is None):
        return None
    why = presence.error or "its PowerShell module WebAdministration is not installed"
    return Finding(
        "iis-module-missing",
        Severity.ERROR,
        f"IIS is installed, but gather could not read it: {why}; install the IIS Management "
        "Scripts and Tools (Install-WindowsFeature Web-Scripting-Tools) and gather again — "
        "until then no IIS application or HTTPS binding can be planned",
        subject,
    )


def served_thumbprint(iis: IisFacts, binding: BindingFact) -> str:
    """What http.sys serves for ``binding`` (its SNI or ip:port entry), else IIS's hash."""
    for entry in iis.ssl_bindings:
        if entry.port != binding.port:
            continue
        if binding.sni and entry.host.casefold() == binding.host.casefold():
            return entry.thumbprint
        if not binding.sni and not entry.host and _same_ip(entry.ip, binding.ip):
            return entry.thumbprint
    return binding.certificate_hash


def _shadowing(
    all_bindings: Sequence[BindingFact], checked: Sequence[BindingFact]
) -> Iterator[Finding]:
    """SNI bindings that a non-SNI binding on a specific IP answers first (http.sys order)."""
    for binding in checked:
        if not binding.sni:
            continue
        for other in all_bindings:
            if not other.sni and other.port == binding.port and other.ip not in _ANY_ADDRESS:
                yield Finding(
                    "sni-shadowed",
                    Severity.WARNING,
                    f"the non-SNI binding {other.binding_information} ({other.site}) answers "
                    f"connections to {other.ip}:{other.port} before SNI is looked at: clients "
                    f"reaching {binding.host} there get its certificate; make it SNI or use *",
                    str(binding),
                )


def _same_ip(entry_ip: str, binding_ip: str) -> bool:
    if binding_ip in _WILDCARD_IPS:
        return entry_ip in _WILDCARD_IPS
    return entry_ip.strip("[]").casefold() == binding_ip.strip("[]").casefold()


def _like(name: str, pattern: str) -> bool:
    """PowerShell's ``-like`` (what gather.ps1 used to pick the services)."""
    return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())


def _normalised(value: str) -> str | None:
    try:
        return normalize_thumbprint(value)
    except ThumbprintError:
        return None


def _describe(certificate: StoreCertificate) -> str:
    role = f"{certificate.role} " if certificate.role else ""
    return f"the {role}certificate «{certificate.name}» ({certificate.thumbprint[:8]}…)"


def _unique(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(dict.fromkeys(findings))
