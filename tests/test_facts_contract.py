"""The gather JSON contract: the golden sample of gather.ps1 parses; bad documents are refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cosdoc_certs.windows.gather import (
    GatherContractError,
    GatherDocument,
    install_folder,
)

SAMPLE = Path(__file__).parent / "windows" / "gather-sample.json"


def _sample() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


def test_the_golden_sample_of_gather_ps1_parses() -> None:
    document = GatherDocument.from_json(SAMPLE.read_text(encoding="utf-8"))
    assert document.computer_name == "COSDOC-APP01"
    assert [service.name for service in document.services] == [
        "Digihelse.Meldingstjeneste",
        "KPR.Innsending",
    ]
    assert document.iis is not None
    sni, plain = document.iis.bindings
    assert (sni.ip, sni.port, sni.host, sni.sni) == ("*", 443, "cosdoc.example.no", True)
    assert (plain.port, plain.host, plain.sni) == (8443, "", False)
    assert [c.key_storage for c in document.certificates] == ["CNG", "CAPI", None]
    assert [c.key_folder for c in document.certificates] == [
        "Crypto\\Keys",
        "Crypto\\RSA\\MachineKeys",
        None,
    ]
    assert [r.sid for r in document.certificates[0].readers][:2] == ["S-1-5-18", "S-1-5-32-544"]
    assert document.services[1].identity.sid == "S-1-5-18"
    default_pool, specific = document.iis.app_pools
    assert default_pool.account == "IIS APPPOOL\\DefaultAppPool"  # the server's name
    assert (specific.identity.sid, specific.account) == (None, "DIPS\\svc-auth")
    assert document.config_files[0].content is not None
    assert document.config_files[0].content.startswith(b"\xef\xbb\xbf{")
    assert document.config_files[1].content is None
    assert document.config_files[2].error is not None
    assert document.config_files[2].error.startswith("System.UnauthorizedAccessException")


def test_http_sys_bindings_are_parsed_from_the_netsh_text() -> None:
    document = GatherDocument.from_json(SAMPLE.read_text(encoding="utf-8"))
    assert document.iis is not None
    bindings = [
        (b.ip, b.port, b.host, b.thumbprint[:4], b.store) for b in document.iis.ssl_bindings
    ]
    assert bindings == [
        ("", 443, "cosdoc.example.no", "6E7E", "My"),
        ("0.0.0.0", 8443, "", "6E7E", "MY"),  # noqa: S104 -- an http.sys entry
        ("::", 9443, "", "EA37", ""),
    ]


def test_to_json_round_trips() -> None:
    document = GatherDocument.from_json(SAMPLE.read_text(encoding="utf-8"))
    assert GatherDocument.from_json(document.to_json()) == document
    assert json.loads(document.to_json()) == _sample()


def _set(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("schemaVersion",), 1, "schema version 1"),
        (("services",), {}, "$.services must be an array, got an object"),
        (("services", 0, "name"), 7, "$.services[0].name must be str, got a number"),
        (("services", 1, "account"), _DELETE, "$.services[1].account is missing"),
        (("iis", "sites", 0, "id"), True, "$.iis.sites[0].id must be a number, got a boolean"),
        (("certificates", 0, "der"), "not base64!", "$.certificates[0].der is not valid base64"),
        (("certificates", 0, "notAfter"), "\\/Date(1)\\/", "is not a yyyy-MM-ddTHH:mm:ssZ date"),
        (("certificates", 1, "thumbprint"), "00" * 20, "thumbprint is not the DER's"),
        (("configFiles", 0, "exists"), None, "$.configFiles[0].exists must be bool, got null"),
        (("services", 0, "identity"), "S-1-5-18", "$.services[0].identity must be an object"),
        (("certificates", 0, "readers", 0), "NT AUTHORITY\\SYSTEM", "readers[0] must be an object"),
        (("httpSys",), _DELETE, "$.httpSys is missing"),
    ],
)
def test_a_document_off_the_contract_is_refused(
    path: tuple[Any, ...], value: Any, message: str
) -> None:
    text = json.dumps(_set(_sample(), path, value))
    with pytest.raises(GatherContractError, match="unexpected document") as caught:
        GatherDocument.from_json(text)
    assert message in str(caught.value)


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(GatherContractError, match="not JSON"):
        GatherDocument.from_json("WARNING: something\n{")


# The same table is in tests/windows/gather.Tests.ps1 (Get-InstallFolder): keep them equal.
@pytest.mark.parametrize(
    ("path_name", "expected"),
    [
        (
            '"C:\\Program Files\\DIPS\\Digihelse\\Digihelse.exe" -service',
            "C:\\Program Files\\DIPS\\Digihelse",
        ),
        (
            "C:\\Program Files\\DIPS\\KPR Innsending\\KPR.Innsending.exe",
            "C:\\Program Files\\DIPS\\KPR Innsending",
        ),
        (
            "C:\\Program Files\\DIPS\\KPR Innsending\\KPR.Innsending.exe --urls http://*:5000",
            "C:\\Program Files\\DIPS\\KPR Innsending",
        ),
        ("D:\\CosDoc\\svc.EXE", "D:\\CosDoc"),
        ('"D:\\CosDoc\\Tjeneste med mellomrom\\svc.exe"', "D:\\CosDoc\\Tjeneste med mellomrom"),
        ("C:\\tools\\runner.bat arg", "C:\\tools"),
        ("   ", None),
        (
            '"C:\\Program Files\\dotnet\\dotnet.exe" "D:\\DIPS\\Adressering\\App.dll" --service',
            "D:\\DIPS\\Adressering",
        ),
        ("C:\\Program Files\\dotnet\\dotnet.exe D:\\DIPS\\Adr\\App.dll", "D:\\DIPS\\Adr"),
        ('C:\\Windows\\System32\\cmd.exe /c "D:\\DIPS\\Wrapped\\start.cmd"', "D:\\DIPS\\Wrapped"),
        ('"C:\\Program Files\\dotnet\\dotnet.exe" --info', "C:\\Program Files\\dotnet"),
    ],
)
def test_install_folder_of_a_service_path_name(path_name: str, expected: str | None) -> None:
    assert install_folder(path_name) == expected


def test_nssm_app_directory_wins_over_the_executable() -> None:
    assert install_folder("C:\\tools\\nssm.exe", "D:\\DIPS\\KPR") == "D:\\DIPS\\KPR"
    assert install_folder("C:\\tools\\nssm.exe", "  ") == "C:\\tools"
