"""Allows ``python -m cosdoc_certs`` as well as the ``cosdoc-certs`` script."""

from cosdoc_certs.cli import main

main()
