"""The lab's WinRM endpoint: WS-Management and PowerShell remoting on loopback for pypsrp.

It does not interpret PowerShell: a pipeline's script is recognised by its first-line marker
(``# cosdoc-certs-script: <name>``) and runs a registered Python handler. See
``docs/lab-protocol.md``.
"""

from cosdoc_certs.lab.winrm.faults import CallRecorder, Faults, ScriptRun
from cosdoc_certs.lab.winrm.scripts import (
    MARKER_PREFIX,
    ScriptCall,
    ScriptHandler,
    ScriptRegistry,
    ScriptResult,
    register_pypsrp_file_transfer,
    script_name,
)
from cosdoc_certs.lab.winrm.server import WinRMEndpoint, tls_context

__all__ = [
    "MARKER_PREFIX",
    "CallRecorder",
    "Faults",
    "ScriptCall",
    "ScriptHandler",
    "ScriptRegistry",
    "ScriptResult",
    "ScriptRun",
    "WinRMEndpoint",
    "register_pypsrp_file_transfer",
    "script_name",
    "tls_context",
]
