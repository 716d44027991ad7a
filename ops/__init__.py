"""Operators' commands for a deployed relay, run from a checkout (never deployed: .funcignore).

They may use the relay's own code (``shared``) to read and write its state the way it does, and
the dev host (``devhost``) only to find the Azurite that ``make run`` started.
"""
