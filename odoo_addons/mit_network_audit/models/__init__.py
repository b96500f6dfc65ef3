from . import (  # noqa: F401
    audit_report,
    egress_body,
    egress_component,
    egress_log,
    egress_rollup,
    ir_http,
    res_config_settings,
)
