"""The demo: loopback stand-ins for a vendor licence server, an LLM provider and a mail server,
and an example application (``app_src/``: each module a top-level package, as third-party
addons are) run under audit, one of whose modules misbehaves."""
