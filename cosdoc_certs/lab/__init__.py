"""The lab: a simulated CosDoc installation on loopback for the demo, the tests and safe trials.

It has a WinRM endpoint that the real pypsrp client talks to, a simulated CosDoc
application server behind it, a SvarUT SSH host, and a factory of test certificates.
"""
