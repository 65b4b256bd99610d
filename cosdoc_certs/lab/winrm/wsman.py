"""WS-Management envelopes for the lab endpoint: parse what pypsrp sends, answer as Windows does.

Only the parts of MS-WSMV that pypsrp's PSRP client uses are covered: the SOAP header
(Action, MessageID, ResourceURI, SelectorSet, OptionSet, OperationTimeout, MaxEnvelopeSize)
and the bodies of Create, Command, Send, Receive, Signal, Delete and Get. Responses echo the
request's MessageID in ``wsa:RelatesTo`` (pypsrp rejects a response without it) and follow
the shapes recorded from real Windows servers.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "pwsh": "http://schemas.microsoft.com/powershell",
    "xml": "http://www.w3.org/XML/1998/namespace",
}
_TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
ACTIONS = {
    _TRANSFER + "Create": "Create",
    _TRANSFER + "Delete": "Delete",
    _TRANSFER + "Get": "Get",
    _SHELL + "Command": "Command",
    _SHELL + "Send": "Send",
    _SHELL + "Receive": "Receive",
    _SHELL + "Signal": "Signal",
}
_RESPONSE_ACTIONS = {
    "Create": _TRANSFER + "CreateResponse",
    "Delete": _TRANSFER + "DeleteResponse",
    "Get": _TRANSFER + "GetResponse",
    "Command": _SHELL + "CommandResponse",
    "Send": _SHELL + "SendResponse",
    "Receive": _SHELL + "ReceiveResponse",
    "Signal": _SHELL + "SignalResponse",
}
FAULT_ACTION = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
POWERSHELL_RESOURCE_PREFIX = "http://schemas.microsoft.com/powershell/"
SHELL_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CONFIG_RESOURCE = "http://schemas.microsoft.com/wbem/wsman/1/config"
COMMAND_STATE_DONE = _SHELL + "CommandState/Done"
COMMAND_STATE_RUNNING = _SHELL + "CommandState/Running"
_PROCESS_ID = 1868  # the wsmprovhost.exe of every lab shell, as in a recording
_ENVELOPE_OVERHEAD = 4096  # bytes around a ReceiveResponse's payload (a Stream per fragment)
_FRAGMENT_HEADER = 21  # ObjectId (8), FragmentId (8), flags (1), BlobLength (4)
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


@dataclasses.dataclass(frozen=True)
class Translation:
    """A fault's texts in another display language: the Reason and the provider's message."""

    reason: str
    provider_message: str = ""


class WSManFault(Exception):
    """A WS-Management fault to answer with (HTTP 500 and a SOAP Fault body).

    ``translations`` holds its texts by language (``"nb-NO"``): a server whose display
    language is one of them answers in it (:meth:`localized`), with the same code.
    """

    def __init__(
        self,
        code: int,
        subcode: str,
        reason: str,
        *,
        sender: bool = True,
        detail: str = "",
        provider_message: str = "",
        language: str = "en-US",
        translations: dict[str, Translation] | None = None,
    ) -> None:
        super().__init__(f"{subcode} ({code}): {reason}")
        self.code = code
        self.subcode = subcode
        self.reason = reason
        self.sender = sender
        self.detail = detail
        self.provider_message = provider_message
        self.language = language
        self.translations = translations or {}

    def localized(self, language: str) -> WSManFault:
        """This fault as a server in ``language`` words it (as is when there is no text)."""
        text = self.translations.get(language)
        if text is None:
            return self
        return WSManFault(
            self.code,
            self.subcode,
            text.reason,
            sender=self.sender,
            detail=self.detail,
            provider_message=text.provider_message if self.provider_message else "",
            language=language,
        )


OPERATION_TIMEOUT = 2150858793  # 0x80338029 ERROR_WSMAN_OPERATION_TIMEDOUT
INVALID_SELECTORS = 2150858843  # 0x8033805B: unknown shell or command
ACTION_NOT_SUPPORTED = 2150858817
INTERNAL_ERROR = 2150858752
ACCESS_DENIED = 5  # ERROR_ACCESS_DENIED
UNEXPECTED_SELECTORS = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/UnexpectedSelectors"


# The Norwegian (nb-NO) texts are the lab's wording of Windows' messages; only the codes
# are the same as on a real server, and the codes are all a client may decide by.
NORWEGIAN = "nb-NO"


def operation_timed_out() -> WSManFault:
    """The fault Windows answers when a Receive had nothing to return in time."""
    return WSManFault(
        OPERATION_TIMEOUT,
        "w:TimedOut",
        "The WS-Management service cannot complete the operation within the time specified "
        "in OperationTimeout.",
        sender=False,
        translations={
            NORWEGIAN: Translation(
                "WS-Management-tjenesten kan ikke fullføre operasjonen innen tiden som er "
                "angitt i OperationTimeout."
            )
        },
    )


def access_denied() -> WSManFault:
    """The fault for an account that authenticated but may not use remoting (not in
    Administrators or Remote Management Users, or a local administrator whose token UAC
    filters)."""
    return WSManFault(
        ACCESS_DENIED,
        "w:AccessDenied",
        "Access is denied. ",
        translations={NORWEGIAN: Translation("Ingen tilgang. ")},
    )


def shell_not_found(shell_id: str) -> WSManFault:
    """The fault for a request naming a shell the endpoint does not have (or no longer has:
    deleted, or expired after its IdleTimeout) — shaped like the recordings of real servers:
    the selectors detail, and the shell provider's message inside ``f:ProviderFault``."""
    return WSManFault(
        INVALID_SELECTORS,
        "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained "
        "invalid selectors for the resource.",
        detail=UNEXPECTED_SELECTORS,
        provider_message=f"The request for the Windows Remote Shell with ShellId {shell_id} "
        "failed because the shell was not found on the server. Possible causes are: the "
        "specified ShellId is incorrect or the shell no longer exists on the server. Provide "
        "the correct ShellId or create a new shell and retry the operation.",
        translations={
            NORWEGIAN: Translation(
                _INVALID_SELECTORS_NB,
                f"Forespørselen for Windows Remote Shell med ShellId {shell_id} mislyktes "
                "fordi skallet ikke ble funnet på serveren. Mulige årsaker: angitt ShellId er "
                "feil, eller skallet finnes ikke lenger på serveren. Angi riktig ShellId, "
                "eller opprett et nytt skall og prøv operasjonen på nytt.",
            )
        },
    )


_INVALID_SELECTORS_NB = (
    "WS-Management-tjenesten kan ikke behandle forespørselen fordi den inneholdt ugyldige "
    "velgere for ressursen."
)


def command_not_found() -> WSManFault:
    """The fault for a request naming a command id the shell does not have."""
    return WSManFault(
        INVALID_SELECTORS,
        "w:InvalidSelectors",
        "The Windows Remote Shell received a request to perform an operation on a command "
        "identifier that does not exist. Either the command has completed execution or the "
        "client specified an invalid command identifier.",
        translations={
            NORWEGIAN: Translation(
                "Windows Remote Shell mottok en forespørsel om å utføre en operasjon på en "
                "kommandoidentifikator som ikke finnes. Enten er kommandoen fullført, eller "
                "klienten angav en ugyldig kommandoidentifikator."
            )
        },
    )


def not_supported(what: str) -> WSManFault:
    """The fault for an action or resource the lab endpoint does not implement."""
    return WSManFault(
        ACTION_NOT_SUPPORTED,
        "a:ActionNotSupported",
        f"The lab WinRM endpoint does not support {what}; it speaks PowerShell remoting "
        "(PSRP) only.",
    )


def internal_error(action: str) -> WSManFault:
    """The fault for a request the lab failed on (a bug in the lab; see its log)."""
    return WSManFault(
        INTERNAL_ERROR,
        "w:InternalError",
        f"The lab WinRM endpoint failed while processing a {action} request; see its log.",
        sender=False,
    )


def invalid_message(detail: str) -> WSManFault:
    """The fault for a request the endpoint cannot read."""
    return WSManFault(
        ACTION_NOT_SUPPORTED,
        "w:InvalidMessageInformationHeader",
        f"The WS-Management request cannot be processed: {detail}.",
    )


@dataclass(frozen=True)
class WSManRequest:
    """The parts of a WS-Management request the endpoint acts on."""

    action: str
    message_id: str
    resource_uri: str
    body: ET.Element
    selectors: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    operation_timeout: float = 20.0
    max_envelope_size: int | None = None

    @property
    def shell_id(self) -> str:
        """The ShellId selector (empty when absent)."""
        return self.selectors.get("ShellId", "")


def parse_request(data: bytes) -> WSManRequest:
    """Parse a SOAP envelope, or raise WSManFault if it is not a request the lab understands."""
    try:
        envelope = ET.fromstring(data)  # noqa: S314 - loopback lab, expat guards entity expansion
    except ET.ParseError as error:
        raise invalid_message(f"the body is not XML ({error})") from None
    header = envelope.find("s:Header", NS)
    body = envelope.find("s:Body", NS)
    if header is None or body is None:
        raise invalid_message("the envelope has no Header or Body")
    action_uri = _text(header, "a:Action")
    action = ACTIONS.get(action_uri)
    if action is None:
        raise not_supported(f"the action {action_uri or '(none)'}")
    max_size = _text(header, "w:MaxEnvelopeSize")
    return WSManRequest(
        action=action,
        message_id=_text(header, "a:MessageID"),
        resource_uri=_text(header, "w:ResourceURI"),
        body=body,
        selectors=_named_values(header, "w:SelectorSet/w:Selector"),
        options=_named_values(header, "w:OptionSet/w:Option"),
        operation_timeout=parse_duration(_text(header, "w:OperationTimeout") or "PT20S"),
        max_envelope_size=int(max_size) if max_size.isdigit() else None,
    )


def parse_duration(text: str) -> float:
    """Seconds in an xs:duration such as ``PT20S`` or ``PT7200.000S``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise invalid_message(f"the duration {text!r} is not an xs:duration")
    scale = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(match.group(k) or 0) * v for k, v in scale.items())


def _text(parent: ET.Element, path: str) -> str:
    element = parent.find(path, NS)
    return (element.text or "").strip() if element is not None else ""


def _named_values(parent: ET.Element, path: str) -> dict[str, str]:
    return {e.attrib.get("Name", ""): (e.text or "").strip() for e in parent.findall(path, NS)}


def _q(prefixed: str) -> str:
    prefix, local = prefixed.split(":", 1)
    return f"{{{NS[prefix]}}}{local}"


def response(request: WSManRequest, *body: ET.Element) -> bytes:
    """A response envelope to ``request`` carrying ``body`` elements."""
    return _envelope(_RESPONSE_ACTIONS[request.action], request.message_id, list(body))


def fault(relates_to: str, error: WSManFault) -> bytes:
    """A SOAP Fault envelope as Windows sends it (pypsrp reads the WSManFault Code)."""
    fault_el = ET.Element(_q("s:Fault"))
    code = ET.SubElement(fault_el, _q("s:Code"))
    ET.SubElement(code, _q("s:Value")).text = "s:Sender" if error.sender else "s:Receiver"
    ET.SubElement(ET.SubElement(code, _q("s:Subcode")), _q("s:Value")).text = error.subcode
    reason = ET.SubElement(fault_el, _q("s:Reason"))
    ET.SubElement(reason, _q("s:Text"), {_q("xml:lang"): error.language}).text = error.reason
    detail = ET.SubElement(fault_el, _q("s:Detail"))
    if error.detail:
        ET.SubElement(detail, _q("w:FaultDetail")).text = error.detail
    attributes = {"Code": str(error.code), "Machine": "127.0.0.1"}
    wsman_fault = ET.SubElement(detail, _q("f:WSManFault"), attributes)
    message = ET.SubElement(wsman_fault, _q("f:Message"))
    if error.provider_message:
        provider = ET.SubElement(
            message,
            _q("f:ProviderFault"),
            {"provider": "Shell provider", "path": "%systemroot%\\system32\\WsmSvc.dll"},
        )
        inner = ET.SubElement(provider, _q("f:WSManFault"), attributes)
        ET.SubElement(inner, _q("f:Message")).text = error.provider_message
    else:
        message.text = error.reason
    return _envelope(FAULT_ACTION, relates_to, [fault_el])


def _envelope(action: str, relates_to: str, body: list[ET.Element]) -> bytes:
    envelope = ET.Element(_q("s:Envelope"), {_q("xml:lang"): "en-US"})
    header = ET.SubElement(envelope, _q("s:Header"))
    ET.SubElement(header, _q("a:Action")).text = action
    ET.SubElement(header, _q("a:MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    ET.SubElement(header, _q("p:ActivityId")).text = str(uuid.uuid4()).upper()
    ET.SubElement(header, _q("a:To")).text = ANONYMOUS
    ET.SubElement(header, _q("a:RelatesTo")).text = relates_to
    body_el = ET.SubElement(envelope, _q("s:Body"))
    body_el.extend(body)
    data: bytes = ET.tostring(envelope, encoding="utf-8", xml_declaration=False)
    return data


def shell_element(
    shell_id: str, resource_uri: str, owner: str, state: str, idle_timeout: float = 7200.0
) -> ET.Element:
    """The ``rsp:Shell`` description returned by Create and Get."""
    shell = ET.Element(_q("rsp:Shell"))
    fields = {
        "ShellId": shell_id,
        "ResourceUri": resource_uri,
        "Owner": owner,
        "ClientIP": "127.0.0.1",
        "ProcessId": str(_PROCESS_ID),
        "IdleTimeOut": f"PT{idle_timeout:.3f}S",
        "InputStreams": "stdin pr",
        "OutputStreams": "stdout",
        "MaxIdleTimeOut": "PT2147483.647S",
        "Locale": "en-US",
        "DataLocale": "en-US",
        "CompressionMode": "NoCompression",
        "ProfileLoaded": "Yes",
        "Encoding": "UTF8",
        "BufferMode": "Block",
        "State": state,
        "ShellRunTime": "P0DT0H0M0S",
        "ShellInactivity": "P0DT0H0M0S",
    }
    for name, value in fields.items():
        ET.SubElement(shell, _q(f"rsp:{name}")).text = value
    return shell


def resource_created(address: str, resource_uri: str, shell_id: str) -> ET.Element:
    """``x:ResourceCreated`` with the ShellId selector pypsrp uses in every later request."""
    created = ET.Element(_q("x:ResourceCreated"))
    ET.SubElement(created, _q("a:Address")).text = address
    params = ET.SubElement(created, _q("a:ReferenceParameters"))
    ET.SubElement(params, _q("w:ResourceURI")).text = resource_uri
    selectors = ET.SubElement(params, _q("w:SelectorSet"))
    ET.SubElement(selectors, _q("w:Selector"), {"Name": "ShellId"}).text = shell_id
    return created


def command_response(command_id: str) -> ET.Element:
    """``rsp:CommandResponse`` naming the new pipeline's command id."""
    element = ET.Element(_q("rsp:CommandResponse"))
    ET.SubElement(element, _q("rsp:CommandId")).text = command_id
    return element


def receive_response(data: bytes, command_id: str | None, done: bool) -> ET.Element:
    """``rsp:ReceiveResponse`` carrying PSRP fragments on stdout, and the command state."""
    element = ET.Element(_q("rsp:ReceiveResponse"))
    command_attr = {"CommandId": command_id} if command_id else {}
    for fragment in psrp_fragments(data):  # one rsp:Stream per fragment, as Windows sends
        stream = ET.SubElement(element, _q("rsp:Stream"), {"Name": "stdout", **command_attr})
        stream.text = base64.b64encode(fragment).decode("ascii")
    if command_id:
        state = COMMAND_STATE_DONE if done else COMMAND_STATE_RUNNING
        state_el = ET.SubElement(
            element, _q("rsp:CommandState"), {"CommandId": command_id, "State": state}
        )
        if done:
            ET.SubElement(state_el, _q("rsp:ExitCode")).text = "0"
    return element


def receive_streams(command_id: str, streams: dict[str, bytes], exit_code: int) -> ET.Element:
    """``rsp:ReceiveResponse`` of a finished WinRS command: each stream and its end, and the
    command state Done with its exit code."""
    element = ET.Element(_q("rsp:ReceiveResponse"))
    for name, data in streams.items():
        attributes = {"Name": name, "CommandId": command_id}
        if data:
            stream = ET.SubElement(element, _q("rsp:Stream"), attributes)
            stream.text = base64.b64encode(data).decode("ascii")
        ET.SubElement(element, _q("rsp:Stream"), {**attributes, "End": "true"})
    state = ET.SubElement(
        element, _q("rsp:CommandState"), {"CommandId": command_id, "State": COMMAND_STATE_DONE}
    )
    ET.SubElement(state, _q("rsp:ExitCode")).text = str(exit_code)
    return element


def psrp_fragments(data: bytes) -> list[bytes]:
    """``data`` cut into its PSRP fragments (MS-PSRP 2.2.4: object id, fragment id, flags,
    then a big-endian length and that many bytes); a tail that is no whole fragment stays
    one piece."""
    pieces, position = [], 0
    while position < len(data):
        header_end = position + _FRAGMENT_HEADER
        if header_end > len(data):
            break
        length = int.from_bytes(data[header_end - 4 : header_end], "big")
        pieces.append(data[position : header_end + length])
        position = header_end + length
    if position < len(data):
        pieces.append(data[position:])
    return [piece for piece in pieces if piece]


def empty(local_name: str) -> ET.Element:
    """An empty ``rsp:`` element such as ``SendResponse`` or ``SignalResponse``."""
    return ET.Element(_q(f"rsp:{local_name}"))


def config_element(max_envelope_size_kb: int) -> ET.Element:
    """The WinRM service configuration pypsrp's ``update_max_payload_size()`` reads."""
    config = ET.Element(_q("cfg:Config"))
    ET.SubElement(config, _q("cfg:MaxEnvelopeSizekb")).text = str(max_envelope_size_kb)
    ET.SubElement(config, _q("cfg:MaxTimeoutms")).text = "60000"
    return config


def base64_budget(max_envelope_size: int) -> int:
    """Raw bytes that fit, base64-encoded, in an envelope of ``max_envelope_size`` bytes."""
    return max(0, (max_envelope_size - _ENVELOPE_OVERHEAD) // 4 * 3)


def find(parent: ET.Element, path: str) -> ET.Element | None:
    """``parent.find`` with the endpoint's namespace prefixes."""
    return parent.find(path, NS)


def findall(parent: ET.Element, path: str) -> list[ET.Element]:
    """``parent.findall`` with the endpoint's namespace prefixes."""
    return parent.findall(path, NS)
