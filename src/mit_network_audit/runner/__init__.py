"""Running the auditor inside a process: from the environment (``mit-network-audit run``), or
embedded by a host (Odoo).  Sits above the journal and report layers: it wires them together."""
