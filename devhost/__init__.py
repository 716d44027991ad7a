"""Local stand-ins for the parts of Azure a laptop lacks (README.md, "What runs locally"). Never deployed."""
