"""What Windows PowerShell 5.1 itself does to a script's input, where it matters to the lab.

``ConvertFrom-Json`` in Windows PowerShell 5.1 parses with .NET's ``JavaScriptSerializer``,
whose ``MaxJsonLength`` defaults to 2,097,152 characters: longer text fails with an
``ArgumentException`` before anything is parsed. PowerShell 6+ (Json.NET) has no such limit.
"""

from __future__ import annotations

import json
from typing import Any

from cosdoc_certs.lab.server.errors import SimulatedWindowsError

MAX_JSON_LENGTH = 2_097_152


def convert_from_json(text: str) -> Any:
    """``ConvertFrom-Json -InputObject text`` as Windows PowerShell 5.1 runs it."""
    if len(text) > MAX_JSON_LENGTH:
        raise SimulatedWindowsError(
            "Error during serialization or deserialization using the JSON JavaScriptSerializer. "
            "The length of the string exceeds the value set on the maxJsonLength property.\r\n"
            "Parameter name: input",
            error_id="System.ArgumentException,Microsoft.PowerShell.Commands.ConvertFromJsonCommand",
            category="NotSpecified",
            hresult=0x80070057,
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise SimulatedWindowsError(
            f"Invalid JSON primitive: {error.msg}.",
            error_id="System.ArgumentException,Microsoft.PowerShell.Commands.ConvertFromJsonCommand",
            category="NotSpecified",
            hresult=0x80070057,
        ) from None
