"""Clients of the bus: what a participant's information system runs."""
