"""Calls each library the way an addon would; line numbers are asserted by the tests."""

import http.client
import socket
import urllib.request
from urllib.parse import urlsplit


def with_requests(url, **kwargs):
    import requests
    return requests.get(url, **kwargs)  # LINE_REQUESTS


def with_urllib(url):
    with urllib.request.urlopen(url, timeout=5) as response:  # LINE_URLLIB
        return response.read()


def with_urllib3(url):
    import urllib3
    return urllib3.PoolManager().request("GET", url)  # LINE_URLLIB3


def with_http_client(url):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("GET", parts.path or "/")  # LINE_HTTP_CLIENT
    body = conn.getresponse().read()
    conn.close()
    return body


def with_socket(host, port):
    sock = socket.create_connection((host, port), timeout=5)  # LINE_SOCKET
    sock.sendall(b"GET /echo HTTP/1.0\r\n\r\n")
    data = sock.recv(65536)
    sock.close()
    return data
