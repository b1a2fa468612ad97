"""Local development stack for the ETL job (see local/stack.py, local/seed.py and the Makefile)."""
