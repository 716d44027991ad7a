"""Local stand-ins for the parts of Azure a laptop lacks (SPEC §9). Never deployed."""
