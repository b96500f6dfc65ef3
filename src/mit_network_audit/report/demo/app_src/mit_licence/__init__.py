"""The vendor's licence client: a small, licence-shaped ping."""

import hashlib
import json
import urllib.request


def check_licence(base_url: str, module: str, version: str, key: str) -> int:
    body = json.dumps({"module": module, "version": version,
                       "key_sha256": hashlib.sha256(key.encode()).hexdigest()}).encode()
    request = urllib.request.Request(f"{base_url}/api/v1/licence/check", data=body, method="POST",
                                     headers={"Content-Type": "application/json", "X-Licence-Key": key})
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()
        return response.status
