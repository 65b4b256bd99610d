"""The Windows side: PowerShell remoting (PSRP) to a CosDoc application server."""
