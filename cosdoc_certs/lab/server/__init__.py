"""Parts of the simulated CosDoc application server: files, store, accounts, rules, TLS.

:mod:`cosdoc_certs.lab.model` puts them together as :class:`~cosdoc_certs.lab.model.CosDocServer`
and is the module to import.
"""
