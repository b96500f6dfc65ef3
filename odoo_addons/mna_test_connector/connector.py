"""The whole connector: one outbound call through requests, as a real integration addon would make."""

import requests


def fetch(url, timeout=5):
    response = requests.get(url, timeout=timeout)
    return response.status_code


def send(url, data, timeout=5):
    """An outbound POST with a body (what forensic capture keeps when it is in scope)."""
    response = requests.post(url, data=data, timeout=timeout)
    return response.status_code
