"""Plan a Windows rotation from gathered facts and the new certificates — pure, no I/O.

:func:`plan_windows` turns what ``gather`` saw on a CosDoc application server
(:class:`~cosdoc_certs.facts.WindowsFacts`) and the new certificates
(:class:`~cosdoc_certs.certs.CertificateBundle`) into a :class:`~cosdoc_certs.plan.Plan`.
Which service or IIS application uses which certificate in which file and key comes from the
doctor (:func:`cosdoc_certs.facts.diagnose`); this module decides what must change:

1. ``import-cert`` — each new certificate the plan uses that ``LocalMachine\\My`` lacks, with
   the key provider its key will get (:func:`choose_key_provider`);
2. ``edit-config-key`` — one per config file: every thumbprint key set to the new certificate
   *of the role that key wants* (also a value that only differs by invisible characters);
3. ``grant-key-read`` — each account that will use a new key and cannot read it (a key
   imported now has the default ACL: SYSTEM and Administrators only);
4. ``rebind-https`` — each http.sys certificate entry (a SNI ``host:port`` or a non-SNI
   ``ip:port``, shared by every site on it) that serves another certificate;
5. ``restart-service`` / ``recycle-pool`` — what reads a changed config or key ACL;
6. ``manual-step`` — E-meldinger, with the facts a person compares.

Every instance that needs nothing is a no-op with its reason. Instances that use another
organisation's certificates (two municipalities on one server, «samdrift») and HTTPS host
names the new SSL certificate does not cover are left alone, and say so. SvarUT is planned by
:mod:`cosdoc_certs.svarut` and does not appear here. Bad input is refused before anything is
planned: a half Buypass pair, an expired or not yet valid certificate, one without a private
key or with no CosDoc role, a config file that is missing or malformed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric import rsa

from cosdoc_certs.appsettings import AppSettings, edit_diff
from cosdoc_certs.certs import CertificateBundle, CertificateInfo, Role
from cosdoc_certs.certs.model import ROLE_DESCRIPTIONS, utc_now
from cosdoc_certs.certs.providers import (
    SAFE_DEFAULT,
    SOFTWARE_KSP,
    KeyApi,
    key_provider,
    unusable_because,
)
from cosdoc_certs.consumers import (
    COSDOC_CATALOG,
    Consumer,
    HttpsBindingsConsumer,
    IisConsumer,
    ManualStep,
    ServiceConsumer,
)
from cosdoc_certs.errors import ConfigFileError, InputError
from cosdoc_certs.facts import (
    DEFAULT_KEY_READER_SIDS,
    CertificateUse,
    ConsumerStatus,
    StoreCertificate,
    WindowsFacts,
    can_read,
    diagnose,
    key_without_file,
    served_thumbprint,
)
from cosdoc_certs.plan import Change, ChangeKind, Plan
from cosdoc_certs.thumbprints import show_invisible
from cosdoc_certs.windows.gather import BindingFact, IisFacts

__all__ = [
    "STORE",
    "KeyProviderChoice",
    "choose_key_provider",
    "http_sys_entry",
    "plan_windows",
    "short_thumbprint",
]

log = logging.getLogger(__name__)

STORE = "LocalMachine\\My"
_PAIR = (Role.SIGNING, Role.ENCRYPTION)
_CONFIG_PROBLEMS = frozenset(
    {"config-missing", "config-invalid", "setting-missing", "config-unreadable"}
)
# IIS's "*" is http.sys's 0.0.0.0; "[::]" (every IPv6 address) is an entry of its own.
_WILDCARD_IPS = frozenset({"*", "", "0.0.0.0"})  # noqa: S104 -- binding notation


def plan_windows(
    facts: WindowsFacts,
    bundle: CertificateBundle,
    consumers: Sequence[Consumer] = COSDOC_CATALOG,
    *,
    host: str,
    now: dt.datetime | None = None,
    key_providers: Mapping[Role, str] | None = None,
) -> Plan:
    """The changes that put ``bundle``'s certificates in use on the server ``facts`` describe.

    ``key_providers`` overrides the key provider chosen for a role's new key (a provider name,
    see :mod:`cosdoc_certs.certs.providers`).
    """
    moment = now or utc_now()
    new = _new_certificates(bundle, facts, moment)
    _refuse_unread_iis(facts)
    planner = _Planner(facts, new, host, dict(key_providers or {}))
    for status in diagnose(facts, consumers, now=moment):
        planner.add(status)
    plan = Plan(planner.changes(), moment, _title(host, new))
    log.info("planned %r", plan)
    return plan


def short_thumbprint(thumbprint: str) -> str:
    """``3F2A…09A1``: enough of a thumbprint to recognise it in a sentence."""
    return f"{thumbprint[:4]}…{thumbprint[-4:]}"


# -- the new certificates ---------------------------------------------------------------------


def _new_certificates(
    bundle: CertificateBundle, facts: WindowsFacts, now: dt.datetime
) -> dict[Role, CertificateInfo]:
    """The bundle's certificate per role, checked; InputError when the bundle cannot be used."""
    for info in bundle:
        if info.role is None:
            raise InputError(
                f"the certificate «{info.issued_to or info.subject}» ({info.thumbprint}) fits no "
                f"CosDoc role (key usage: {', '.join(info.key_usage) or 'none'})",
                "give the Buypass signing and encryption files and/or the SSL certificate only",
            )
    new = {role: _checked(bundle, role, facts, now) for role in Role if bundle.with_role(role)}
    present = [role for role in _PAIR if role in new]
    if len(present) == 1:
        (missing,) = (role for role in _PAIR if role not in new)
        raise InputError(
            f"the files hold the {present[0]} certificate but not the {missing} one; the two "
            "Buypass certificates are renewed and rotated together",
            f"add the file with {ROLE_DESCRIPTIONS[missing]}",
        )
    if not new:
        raise InputError(
            "the files hold no enterprise or SSL certificate to rotate to",
            "give the new Buypass PFX file(s) and/or the new SSL certificate's PFX",
        )
    return new


def _checked(
    bundle: CertificateBundle, role: Role, facts: WindowsFacts, now: dt.datetime
) -> CertificateInfo:
    matches = bundle.with_role(role)
    info = matches[0] if len(matches) == 1 else bundle.require(role)  # require() says why
    if now < info.not_before:
        raise InputError(
            f"the new {info.label} is not valid until {info.not_before:%Y-%m-%d %H:%M} UTC",
            "wait until it is valid, or check the server's and this machine's clocks",
        )
    if now >= info.not_after:
        raise InputError(
            f"the new {info.label} expired on {info.not_after:%Y-%m-%d}",
            "give the renewed certificate's file, not the old one",
        )
    stored = facts.certificate(info.thumbprint)
    if info.private_key is None and not (stored and stored.fact.has_private_key):
        bundle.require(role)  # raises: no private key, with the hint
    return info


def _title(host: str, new: dict[Role, CertificateInfo]) -> str:
    rotated = ", ".join(f"{role} {short_thumbprint(info.thumbprint)}" for role, info in new.items())
    return f"Windows rotation on {host}: {rotated}"


# -- planning ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Grant:
    consumer: str
    thumbprint: str
    role: Role
    account: str
    sid: str
    instances: list[str]


class _Planner:
    """Collects the changes of one plan, grouped by kind, while consumers are examined."""

    def __init__(
        self,
        facts: WindowsFacts,
        new: dict[Role, CertificateInfo],
        host: str,
        key_providers: dict[Role, str],
    ) -> None:
        self.facts = facts
        self.new = new
        self.host = host
        self.key_providers = key_providers
        self.current_providers: dict[Role, list[str]] = {}
        self.key_needs: dict[Role, list[tuple[str, KeyApi]]] = {}
        self.edits: list[Change] = []
        self.grants: dict[tuple[str, str], _Grant] = {}
        self.bindings: list[Change] = []
        self.central_store: list[Change] = []
        self.restarts: dict[str, Change] = {}
        self.manual: list[Change] = []
        self.noops: list[Change] = []
        self.used: set[Role] = set()

    def add(self, status: ConsumerStatus) -> None:
        consumer = status.consumer
        if isinstance(consumer, (ServiceConsumer, IisConsumer)):
            self._config_consumer(status, consumer)
        elif isinstance(consumer, HttpsBindingsConsumer):
            self._bindings(status)
        elif isinstance(consumer, ManualStep):
            self.manual.append(self._manual_step(consumer))
        # SvarutConsumer: planned by the SvarUT rotation (cosdoc_certs.svarut)

    def changes(self) -> tuple[Change, ...]:
        """Everything in execution order, the no-ops last."""
        grants = [self._grant_change(grant) for grant in self.grants.values()]
        manual = list(self._manual_changes())
        return (
            *self._imports(),
            *self.edits,
            *grants,
            *self.bindings,
            *self.restarts.values(),
            *self.central_store,
            *manual,
            *self.noops,
        )

    def _noop(self, consumer: str, reason: str, **details: object) -> None:
        self.noops.append(Change.noop(self.host, consumer, reason, **details))

    # -- services and IIS applications ----------------------------------------------------

    def _config_consumer(
        self, status: ConsumerStatus, consumer: ServiceConsumer | IisConsumer
    ) -> None:
        roles = [role for role in consumer.roles if role in self.new]
        if not status.instances:
            reason = "; ".join(f.message for f in status.findings) or "not found on this server"
            self._noop(status.name, reason)
            return
        if not roles:
            wanted = " and ".join(str(role) for role in consumer.roles)
            self._noop(status.name, f"the files hold no {wanted} certificate to rotate to")
            return
        for instance in status.instances:
            _refuse_config_problems(status, consumer, instance, roles)
            uses = [u for u in status.uses if u.instance == instance and u.role in roles]
            self._note_key_use(status.name, consumer.key_api, uses)
            self._config_instance(status.name, instance, uses)

    def _note_key_use(self, consumer: str, key_api: KeyApi, uses: list[CertificateUse]) -> None:
        """Remember the providers of the current keys and how the consumer opens them."""
        for use in uses:
            self.key_needs.setdefault(use.role, []).append((consumer, key_api))
            self._note_current_key(use.role, use.certificate)

    def _note_current_key(self, role: Role, current: StoreCertificate | None) -> None:
        """Remember the provider of the key a consumer of ``role`` uses now (not the new one)."""
        if current is None or current.thumbprint == self.new[role].thumbprint:
            return
        if current.fact.has_private_key and current.fact.key_provider:
            self.current_providers.setdefault(role, []).append(current.fact.key_provider)

    def _config_instance(self, consumer: str, instance: str, uses: list[CertificateUse]) -> None:
        foreign = self._foreign(uses)
        if foreign:
            self._noop(
                consumer, f"{instance} {foreign}; rotate it with its own files", instance=instance
            )
            return
        edited = [use for use in uses if use.configured != self.new[use.role].thumbprint]
        grants = [use for use in uses if use.account and not self._can_read(use)]
        for use in grants:
            self._add_grant(consumer, use)
        if edited:
            self.edits.extend(self._edit_changes(consumer, edited))
        if not edited and not grants:
            self._noop(consumer, _already_uses(instance, uses), instance=instance)
            return
        self.used.update(use.role for use in [*edited, *grants])
        self._add_restart(consumer, uses[0], bool(edited), bool(grants))

    def _foreign(self, uses: Iterable[CertificateUse]) -> str | None:
        """Why these uses belong to another organisation's certificates (samdrift), or None."""
        for use in uses:
            current, new = use.certificate, self.new[use.role]
            if current is None or current.thumbprint == new.thumbprint:
                continue
            if use.role is Role.SSL:
                if current.info.dns_names and not set(current.info.dns_names) & set(new.dns_names):
                    return (
                        f"uses the SSL certificate for {', '.join(current.info.dns_names)}, none "
                        f"of which the new one ({', '.join(new.dns_names)}) covers"
                    )
                continue
            number, new_number = current.info.organisation_number, new.organisation_number
            if number and new_number and number != new_number:
                return (
                    f"uses certificates of «{current.name}» (organisation number {number}), not "
                    f"of «{new.issued_to}» ({new_number}): another organisation on this server"
                )
        return None

    def _can_read(self, use: CertificateUse) -> bool:
        if use.account_sid is None:
            raise InputError(
                f"{use.instance} runs as {use.account}, which the server could not resolve to a "
                "SID, so its access to the new key can be neither checked nor granted",
                "correct the account of the service or app pool, then plan again; nothing was "
                "changed",
            )
        stored = self.facts.certificate(self.new[use.role].thumbprint)
        if stored is None or not stored.fact.has_private_key:
            readers: Sequence[str | None] = DEFAULT_KEY_READER_SIDS  # what an imported key gets
        elif stored.fact.key_file is None:
            return False  # cannot see the ACL: grant (apply finds the key file)
        else:
            readers = [reader.sid for reader in stored.fact.readers]
        return can_read(use.account_sid, readers)

    def _edit_changes(self, consumer: str, uses: list[CertificateUse]) -> Iterable[Change]:
        files: dict[str, list[CertificateUse]] = {}
        for use in uses:
            assert use.file is not None
            files.setdefault(use.file, []).append(use)
        for path, file_uses in files.items():
            yield self._edit_change(consumer, path, file_uses)

    def _edit_change(self, consumer: str, path: str, uses: list[CertificateUse]) -> Change:
        gathered = self.facts.config_file(path)
        assert gathered is not None  # the doctor read it
        assert gathered.content is not None
        before = gathered.content
        values = {use.setting: self.new[use.role].thumbprint for use in uses}
        after = AppSettings.parse(before, source=path).replace(values)
        edits = [
            {
                "path": use.setting,
                "role": use.role.value,
                "old": show_invisible(use.configured or ""),
                "new": self.new[use.role].thumbprint,
            }
            for use in uses
        ]
        keys = ", ".join(f"{use.setting.removeprefix('$.')} ({use.role})" for use in uses)
        return Change(
            self.host,
            consumer,
            ChangeKind.EDIT_CONFIG_KEY,
            f"set {keys} in {path}",
            {
                "file": path,
                "instance": uses[0].instance,
                "sha256_before": hashlib.sha256(before).hexdigest(),
                "sha256_after": hashlib.sha256(after).hexdigest(),
                "edits": edits,
            },
            diff=edit_diff(before, after, source=path),
        )

    def _add_grant(self, consumer: str, use: CertificateUse) -> None:
        assert use.account is not None
        assert use.account_sid is not None
        thumbprint = self.new[use.role].thumbprint
        stored = self.facts.certificate(thumbprint)
        if stored is not None and key_without_file(stored.fact):
            raise InputError(
                f"{use.instance} ({use.account}) needs read on the key of the new {use.role} "
                f"certificate {short_thumbprint(thumbprint)}, but that key is kept by "
                f"{stored.fact.key_provider} (TPM, smart card or HSM): access cannot be granted "
                "by a file ACL",
                "give the account access with the provider's own tools (or use a certificate "
                "with a software key), then plan again; nothing was changed",
            )
        key = (thumbprint, use.account_sid)
        grant = self.grants.setdefault(
            key, _Grant(consumer, thumbprint, use.role, use.account, use.account_sid, [])
        )
        if use.instance not in grant.instances:
            grant.instances.append(use.instance)

    def _grant_change(self, grant: _Grant) -> Change:
        stored = self.facts.certificate(grant.thumbprint)
        where = (
            f"its key file in {stored.fact.key_folder}"
            if stored and stored.fact.key_folder
            else "its key once imported"
        )
        return Change(
            self.host,
            grant.consumer,
            ChangeKind.GRANT_KEY_READ,
            f"let {grant.account} read the private key of the new {grant.role} certificate "
            f"{short_thumbprint(grant.thumbprint)} ({where}; used by {', '.join(grant.instances)})",
            {
                "thumbprint": grant.thumbprint,
                "account": grant.account,
                "sid": grant.sid,
                "role": grant.role.value,
                "instances": list(grant.instances),
            },
        )

    def _add_restart(self, consumer: str, use: CertificateUse, edited: bool, granted: bool) -> None:
        why = " and ".join(
            part for part, done in (("config", edited), ("key access", granted)) if done
        )
        if use.app_pool is None:
            self.restarts.setdefault(
                f"service:{use.instance}",
                Change(
                    self.host,
                    consumer,
                    ChangeKind.RESTART_SERVICE,
                    f"restart the service {use.instance} ({why} changed)",
                    {"service": use.instance},
                ),
            )
            return
        state = _pool_state(self.facts.iis, use.app_pool)
        verb = "start" if state == "Stopped" else "recycle"
        note = " — it is stopped now, so it is started instead" if verb == "start" else ""
        self.restarts.setdefault(
            f"pool:{use.app_pool.casefold()}",
            Change(
                self.host,
                consumer,
                ChangeKind.RECYCLE_POOL,
                f"{verb} the app pool {use.app_pool} of {use.instance} ({why} changed){note}",
                {"pool": use.app_pool, "state": state},
            ),
        )

    # -- HTTPS bindings -------------------------------------------------------------------

    def _bindings(self, status: ConsumerStatus) -> None:
        iis = self.facts.iis
        new = self.new.get(Role.SSL)
        if new is None:
            self._noop(status.name, "the files hold no SSL certificate to rotate to")
            return
        bindings = [b for b in (iis.bindings if iis else ()) if str(b) in status.instances]
        if iis is None or not bindings:
            reason = "; ".join(f.message for f in status.findings) or "no HTTPS binding"
            self._noop(status.name, reason)
            return
        entries: dict[tuple[str, str, int], list[BindingFact]] = {}
        for binding in bindings:
            if binding.central_store:
                self._central_store_binding(status.name, binding, new)
                continue
            entries.setdefault(http_sys_entry(binding), []).append(binding)
        for shared in entries.values():
            self._binding_entry(status.name, iis, shared, new)
        for binding in bindings:
            served = self.facts.certificate(served_thumbprint(iis, binding))
            self._note_current_key(Role.SSL, served)

    def _binding_entry(
        self, consumer: str, iis: IisFacts, shared: list[BindingFact], new: CertificateInfo
    ) -> None:
        binding = shared[0]
        served = served_thumbprint(iis, binding).upper()
        reason = self._binding_unchanged(binding, served, new)
        if reason is not None:
            for each in shared:
                self._noop(consumer, f"{each} {reason}", binding=each.binding_information)
            return
        self.used.add(Role.SSL)
        others = [str(other) for other in shared[1:]]
        sharing = (
            f"; the non-SNI entry {binding.ip or '*'}:{binding.port} is shared by every site on "
            f"it{' (also ' + ', '.join(others) + ')' if others else ''}"
            if not binding.sni
            else ""
        )
        self.bindings.append(
            Change(
                self.host,
                consumer,
                ChangeKind.REBIND_HTTPS,
                f"serve {short_thumbprint(new.thumbprint)} on {binding} instead of "
                f"{short_thumbprint(served) if served else 'nothing'}{sharing}",
                {
                    "site": binding.site,
                    "binding": binding.binding_information,
                    "sni": binding.sni,
                    "old_thumbprint": served or None,
                    "new_thumbprint": new.thumbprint,
                    "shared_with": [other.binding_information for other in shared[1:]],
                },
            )
        )

    def _central_store_binding(
        self, consumer: str, binding: BindingFact, new: CertificateInfo
    ) -> None:
        """A Central Certificate Store binding: never rebound here, a step for a person.

        It has no http.sys entry of its own: binding a hash to it would create one that
        overrides the central store (SNI) or takes over 0.0.0.0:port for every site.
        """
        if binding.host and not _covers(new.dns_names, binding.host):
            self._noop(
                consumer,
                f"{binding} (Central Certificate Store) is for {binding.host}, which the new "
                "SSL certificate does not cover: left as it is",
                binding=binding.binding_information,
            )
            return
        pfx = f"{binding.host or '<host name>'}.pfx"
        self.central_store.append(
            Change(
                self.host,
                consumer,
                ChangeKind.MANUAL_STEP,
                f"by hand: {binding} takes its certificate from the IIS Central Certificate "
                f"Store — replace {pfx} in the central store's share with the new SSL "
                f"certificate ({short_thumbprint(new.thumbprint)})",
                {
                    "instructions": (
                        f"Export the new SSL certificate with its private key as {pfx} (the "
                        "password the Central Certificate Store is configured with) and "
                        "replace the file of that name in the central store's share; IIS "
                        "picks it up by itself."
                    ),
                    "site": binding.site,
                    "binding": binding.binding_information,
                    "roles": [Role.SSL.value],
                },
            )
        )

    def _binding_unchanged(
        self, binding: BindingFact, served: str, new: CertificateInfo
    ) -> str | None:
        """Why ``binding`` keeps its certificate, or None when it must be rebound."""
        if served == new.thumbprint:
            return f"already serves {short_thumbprint(served)} (ssl)"
        if binding.sni and binding.host and not _covers(new.dns_names, binding.host):
            return (
                f"is for {binding.host}, which the new SSL certificate ({', '.join(new.dns_names)})"
                " does not cover: left as it is"
            )
        current = self.facts.certificate(served) if served else None
        if (
            not binding.host
            and current is not None
            and current.info.dns_names
            and not any(_covers(new.dns_names, name) for name in current.info.dns_names)
        ):
            return (
                f"serves «{current.name}» for {', '.join(current.info.dns_names)}, none of which "
                "the new SSL certificate covers: left as it is"
            )
        return None

    # -- E-meldinger and other manual steps ------------------------------------------------

    def _manual_step(self, consumer: ManualStep) -> Change:
        roles = [role for role in consumer.roles if role in self.new]
        if not roles:
            wanted = " and ".join(str(role) for role in consumer.roles)
            return Change.noop(
                self.host, consumer.name, f"the files hold no {wanted} certificate to rotate to"
            )
        compare = {role.value: _compare_facts(self.new[role]) for role in roles}
        return Change(
            self.host,
            consumer.name,
            ChangeKind.MANUAL_STEP,
            f"by hand: {consumer.name} — select the new "
            + " and ".join(
                f"{role} certificate (serial {self.new[role].serial_number})" for role in roles
            ),
            {
                "instructions": consumer.instructions,
                "compare": compare,
                "roles": [r.value for r in roles],
            },
        )

    def _manual_changes(self) -> Iterable[Change]:
        """Manual steps go with a rotation of their roles; otherwise they are no-ops."""
        for change in self.manual:
            if change.is_noop:
                self.noops.append(change)
            elif self.used & {Role(role) for role in change.details["roles"]}:
                yield change
            else:
                self.noops.append(
                    Change.noop(
                        self.host,
                        change.consumer,
                        "this server already uses the new certificates; if "
                        f"{change.consumer} was not updated by hand yet, do it now:\n"
                        f"{change.details['instructions']}",
                    )
                )

    # -- imports ----------------------------------------------------------------------------

    def _imports(self) -> Iterable[Change]:
        for role in Role:
            info = self.new.get(role)
            if info is None or role not in self.used:
                continue
            stored = self.facts.certificate(info.thumbprint)
            if stored is not None and stored.fact.has_private_key:
                continue
            choice = choose_key_provider(
                role,
                override=self.key_providers.get(role),
                current=self.current_providers.get(role, ()),
                incoming=info.key_provider,
                needs=self.key_needs.get(role, ()),
                rsa_key=isinstance(info.certificate.public_key(), rsa.RSAPublicKey),
            )
            yield Change(
                self.host,
                STORE,
                ChangeKind.IMPORT_CERT,
                f"import the new {role} certificate «{info.issued_to or info.subject}» "
                f"({info.thumbprint}, valid to {info.not_after:%Y-%m-%d}) with its private key "
                f"into {STORE} — key provider: {choice.provider}, {choice.reason}",
                {
                    "thumbprint": info.thumbprint,
                    "role": role.value,
                    "subject": info.subject,
                    "not_after": info.not_after.isoformat(),
                    "key_provider": choice.provider,
                    "key_provider_reason": choice.reason,
                },
            )


@dataclasses.dataclass(frozen=True)
class KeyProviderChoice:
    """The provider a new key is imported into, and why (for the plan's text)."""

    provider: str
    reason: str


def choose_key_provider(
    role: Role,
    *,
    override: str | None = None,
    current: Sequence[str] = (),
    incoming: str | None = None,
    needs: Sequence[tuple[str, KeyApi]] = (),
    rsa_key: bool = True,
) -> KeyProviderChoice:
    """The provider for the new ``role`` key: asked for, else the current key's, else the PFX's.

    ``current`` are the providers of the keys the role's consumers use now (proven to work
    there); ``incoming`` is what the new PFX names; ``needs`` are the consumers of the role and
    how they open keys. A candidate a consumer cannot use (a CNG key for a CAPI-only program,
    a legacy PROV_RSA_FULL key for SHA-256 signing) gives way to one all of them can use. A
    key that is not RSA (ECDSA) can only be in a CNG key storage provider.
    """
    if override:
        return KeyProviderChoice(override, "as asked (--key-provider)")
    if not rsa_key:
        return KeyProviderChoice(
            SOFTWARE_KSP, "the key is not RSA, and CAPI providers hold RSA keys only"
        )
    if current:
        name, _ = Counter(current).most_common(1)[0]
        candidate = KeyProviderChoice(name, f"as the current {role} key")
    elif incoming:
        candidate = KeyProviderChoice(incoming, "as the new PFX file names it")
    else:
        candidate = KeyProviderChoice(
            SAFE_DEFAULT,
            "the default when there is no current key and the PFX names none (CAPI, signs "
            "with SHA-256, opened by CNG-aware programs too)",
        )
    problem = _provider_problem(candidate.provider, role, needs)
    if problem is None:
        return candidate
    for fallback in (SAFE_DEFAULT, SOFTWARE_KSP):
        if _provider_problem(fallback, role, needs) is None:
            return KeyProviderChoice(
                fallback, f"not {candidate.provider} ({candidate.reason}): {problem}"
            )
    return KeyProviderChoice(
        candidate.provider,
        f"{candidate.reason}; WARNING: {problem}, and no provider suits every consumer of the "
        f"{role} key (use --key-provider {role.value}=NAME)",
    )


def _provider_problem(name: str, role: Role, needs: Sequence[tuple[str, KeyApi]]) -> str | None:
    provider = key_provider(name)
    for consumer, key_api in needs:
        why = unusable_because(provider, key_api, signs=role is Role.SIGNING)
        if why is not None:
            return f"{consumer}: {why}"
    return None


def _refuse_unread_iis(facts: WindowsFacts) -> None:
    """InputError when IIS runs but gather could not read it: its part would be left out."""
    presence = facts.document.iis_presence
    if facts.iis is not None or not presence.installed:
        return
    why = presence.error or "its PowerShell module WebAdministration is not installed"
    raise InputError(
        f"IIS runs on this server, but gather could not read it: {why}; every IIS application "
        "and HTTPS binding would silently keep the old certificate",
        "install the IIS Management Scripts and Tools (Install-WindowsFeature "
        "Web-Scripting-Tools), then plan again; nothing was changed",
    )


def _refuse_config_problems(
    status: ConsumerStatus,
    consumer: ServiceConsumer | IisConsumer,
    instance: str,
    roles: list[Role],
) -> None:
    """ConfigFileError when the config of ``instance`` cannot be read or lacks a key to edit."""
    keys = {key.path for key in consumer.keys if key.role in roles}
    for finding in status.findings:
        if finding.code not in _CONFIG_PROBLEMS:
            continue
        if finding.subject == instance or finding.subject in {f"{instance} {k}" for k in keys}:
            raise ConfigFileError(
                f"{status.name} {instance}: {finding.message}",
                "fix the file or its place (a deviations file can name other folders and "
                "keys), then plan again; nothing was changed",
            )


def _already_uses(instance: str, uses: Sequence[CertificateUse]) -> str:
    named = ", ".join(f"{short_thumbprint(use.thumbprint or '')} ({use.role})" for use in uses)
    accounts = sorted({use.account for use in uses if use.account})
    readable = f", and {' and '.join(accounts)} can read the keys" if accounts else ""
    return f"{instance} already uses {named}{readable}"


def _pool_state(iis: IisFacts | None, pool: str) -> str:
    for fact in iis.app_pools if iis else ():
        if fact.name.casefold() == pool.casefold():
            return fact.state
    return "missing"


def http_sys_entry(binding: BindingFact) -> tuple[str, str, int]:
    """The http.sys certificate entry a binding uses: SNI ``host:port`` or ``ip:port``."""
    if binding.sni:
        return ("sni", binding.host.casefold(), binding.port)
    ip = "*" if binding.ip in _WILDCARD_IPS else binding.ip.strip("[]").casefold()
    return ("ip", ip, binding.port)


def _covers(names: Sequence[str], host: str) -> bool:
    """True when a certificate with DNS ``names`` is valid for ``host`` (one-label wildcards)."""
    wanted = host.casefold()
    for name in (name.casefold() for name in names):
        if name == wanted or (
            name.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == name[2:]
        ):
            return True
    return False


def _compare_facts(info: CertificateInfo) -> dict[str, str]:
    """What a person compares by eye in DIPS Communicator: serial, dates, «Utstedt til»."""
    return {
        "serial": info.serial_number,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "issued_to": info.issued_to or info.subject,
        "thumbprint": info.thumbprint,
    }
