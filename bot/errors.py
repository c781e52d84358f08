"""Refusals: requests we turn down with one line the person can act on."""


class Refusal(Exception):
    """Something about the request we can explain to the person in one line."""
