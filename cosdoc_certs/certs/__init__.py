"""The certificate core: load PFX/PEM/DER files, match keys to certificates, classify roles."""
