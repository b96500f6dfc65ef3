"""The whole connector: one outbound call through requests, as a real integration addon would make."""

import requests


def fetch(url, timeout=5):
    response = requests.get(url, timeout=timeout)
    return response.status_code
